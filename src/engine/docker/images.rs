//! Image operations of the real engine: build, import, load, save, push,
//! tag, inspect, remove. Used by `images`, never by the planner.

use std::collections::HashMap;

use bollard::auth::DockerCredentials;
use bollard::body_full;
use bollard::query_parameters::{
    BuildImageOptionsBuilder, CreateImageOptionsBuilder, ImportImageOptionsBuilder,
    PushImageOptionsBuilder, RemoveImageOptionsBuilder, TagImageOptionsBuilder,
};
use futures_util::StreamExt;
use hyper::body::Bytes;

use super::DockerEngine;
use crate::engine::EngineError;

/// What a build asks of the engine.
pub struct BuildRequest<'a> {
    /// The context as a tar archive.
    pub context_tar: Vec<u8>,
    /// Path of the Dockerfile inside the context.
    pub dockerfile: &'a str,
    pub tag: &'a str,
    pub build_args: &'a HashMap<String, String>,
    /// Bytes; 0 = no limit.
    pub memory: i64,
    /// CPU quota in microseconds per 100 ms period; 0 = no limit.
    pub cpu_quota: i64,
}

/// Registry login for push.
pub struct RegistryLogin {
    pub username: String,
    pub password: String,
    pub server: String,
}

fn split_reference(reference: &str) -> (&str, &str) {
    let last_slash = reference.rfind('/').map_or(0, |i| i + 1);
    match reference[last_slash..].rfind(':') {
        Some(i) => (
            &reference[..last_slash + i],
            &reference[last_slash + i + 1..],
        ),
        None => (reference, "latest"),
    }
}

impl DockerEngine {
    /// The image ID a reference names now, if any.
    pub async fn image_id(&self, reference: &str) -> Result<Option<String>, EngineError> {
        self.count();
        match self.docker.inspect_image(reference).await {
            Ok(image) => Ok(image.id),
            Err(e) => match self.error(e) {
                EngineError::NotFound(_) => Ok(None),
                other => Err(other),
            },
        }
    }

    /// Builds and tags; `log` gets every line the build prints. The tag only
    /// moves if the build succeeds.
    pub async fn build_image(
        &self,
        req: BuildRequest<'_>,
        log: &mut dyn FnMut(&str),
    ) -> Result<String, EngineError> {
        self.count();
        let mut options = BuildImageOptionsBuilder::new()
            .dockerfile(req.dockerfile)
            .t(req.tag)
            .rm(true)
            .forcerm(true)
            .buildargs(req.build_args);
        if req.memory > 0 {
            options = options.memory(i32::try_from(req.memory).unwrap_or(i32::MAX));
        }
        if req.cpu_quota > 0 {
            options = options
                .cpuperiod(100_000)
                .cpuquota(i32::try_from(req.cpu_quota).unwrap_or(i32::MAX));
        }
        let mut stream = self.docker.build_image(
            options.build(),
            None,
            Some(body_full(Bytes::from(req.context_tar))),
        );
        let mut id = None;
        // The layers this build made; a `FROM` step's result is a base
        // image, never ours (a multi-stage build has several).
        let mut layers = Vec::new();
        let mut after_from = false;
        while let Some(item) = stream.next().await {
            // bollard reports a failed step either as an error item or as
            // an error detail in an item; both leave layers to clean up.
            let info = match item {
                Ok(info) => info,
                Err(e) => {
                    let e = self.error(e);
                    log(&format!("ERROR: {e}"));
                    self.remove_failed_layers(&layers, log).await;
                    return Err(e);
                }
            };
            if let Some(text) = &info.stream {
                for line in text.lines() {
                    log(line);
                    if let Some(layer) = layer_id(line) {
                        if !std::mem::take(&mut after_from) {
                            layers.push(layer.to_string());
                        }
                    } else if is_from_step(line) {
                        after_from = true;
                    }
                }
            }
            if let Some(status) = &info.status {
                log(status);
            }
            if let Some(detail) = info.error_detail {
                let message = detail.message.unwrap_or_else(|| "build failed".into());
                log(&format!("ERROR: {message}"));
                self.remove_failed_layers(&layers, log).await;
                return Err(EngineError::Api(message));
            }
            if let Some(aux) = info.aux.and_then(|a| a.id) {
                id = Some(aux);
            }
        }
        match id {
            Some(id) => Ok(id),
            None => self.image_id(req.tag).await?.ok_or_else(|| {
                EngineError::Api(format!("build ended without an image for {}", req.tag))
            }),
        }
    }

    /// `docker import`: a root filesystem tar becomes the image `reference`.
    pub async fn import_rootfs(
        &self,
        tar: Vec<u8>,
        reference: &str,
        log: &mut dyn FnMut(&str),
    ) -> Result<String, EngineError> {
        self.count();
        let (repo, tag) = split_reference(reference);
        let options = CreateImageOptionsBuilder::new()
            .from_src("-")
            .repo(repo)
            .tag(tag)
            .build();
        let mut stream =
            self.docker
                .create_image(Some(options), Some(body_full(Bytes::from(tar))), None);
        while let Some(item) = stream.next().await {
            let info = item.map_err(|e| self.error(e))?;
            if let Some(status) = info.status {
                log(&status);
            }
            if let Some(detail) = info.error_detail {
                return Err(EngineError::Api(
                    detail.message.unwrap_or_else(|| "import failed".into()),
                ));
            }
        }
        self.image_id(reference).await?.ok_or_else(|| {
            EngineError::Api(format!("import ended without an image for {reference}"))
        })
    }

    /// `docker load`: a saved-image tar; returns what the engine printed.
    pub async fn load_images(
        &self,
        tar: Vec<u8>,
        log: &mut dyn FnMut(&str),
    ) -> Result<(), EngineError> {
        self.count();
        let options = ImportImageOptionsBuilder::new().quiet(true).build();
        let mut stream = self
            .docker
            .import_image(options, body_full(Bytes::from(tar)), None);
        while let Some(item) = stream.next().await {
            let info = item.map_err(|e| self.error(e))?;
            if let Some(text) = info.stream {
                for line in text.lines() {
                    log(line);
                }
            }
            if let Some(detail) = info.error_detail {
                return Err(EngineError::Api(
                    detail.message.unwrap_or_else(|| "load failed".into()),
                ));
            }
        }
        Ok(())
    }

    /// `docker save`: the image as a tar, written to `out`.
    pub async fn save_image(
        &self,
        reference: &str,
        out: &mut (dyn std::io::Write + Send),
    ) -> Result<(), EngineError> {
        self.count();
        let mut stream = self.docker.export_image(reference);
        while let Some(chunk) = stream.next().await {
            let bytes = chunk.map_err(|e| self.error(e))?;
            out.write_all(&bytes)
                .map_err(|e| EngineError::Api(format!("cannot write the image: {e}")))?;
        }
        Ok(())
    }

    pub async fn tag_image(&self, source: &str, reference: &str) -> Result<(), EngineError> {
        self.count();
        let (repo, tag) = split_reference(reference);
        let options = TagImageOptionsBuilder::new().repo(repo).tag(tag).build();
        self.docker
            .tag_image(source, Some(options))
            .await
            .map_err(|e| self.error(e))
    }

    pub async fn push_image(
        &self,
        reference: &str,
        login: Option<RegistryLogin>,
        log: &mut dyn FnMut(&str),
    ) -> Result<(), EngineError> {
        self.count();
        let (repo, tag) = split_reference(reference);
        let credentials = login.map(|l| DockerCredentials {
            username: Some(l.username),
            password: Some(l.password),
            serveraddress: Some(l.server),
            ..Default::default()
        });
        let options = PushImageOptionsBuilder::new().tag(tag).build();
        let mut stream = self.docker.push_image(repo, Some(options), credentials);
        while let Some(item) = stream.next().await {
            let info = item.map_err(|e| self.error(e))?;
            if let Some(status) = info.status {
                log(&status);
            }
            if let Some(detail) = info.error_detail {
                return Err(EngineError::Api(
                    detail.message.unwrap_or_else(|| "push failed".into()),
                ));
            }
        }
        Ok(())
    }

    /// The layers a failed build left: removing the last one also removes its
    /// untagged parents that nothing else uses. A tagged one (a cache hit on
    /// the previous good image) is kept: removing it by ID would drop the
    /// tag. One other images build on or a container runs is kept too: the
    /// engine refuses, and that refusal is the check.
    async fn remove_failed_layers(&self, layers: &[String], log: &mut dyn FnMut(&str)) {
        let Some(last) = layers.last() else {
            return;
        };
        self.count();
        let tagged = match self.docker.inspect_image(last).await {
            Ok(image) => image.repo_tags.is_some_and(|t| !t.is_empty()),
            Err(_) => return,
        };
        if tagged {
            return;
        }
        self.count();
        let options = RemoveImageOptionsBuilder::new().noprune(false).build();
        match self.docker.remove_image(last, Some(options), None).await {
            Ok(_) => log(&format!(
                "berth: removed the layers of the failed build (up to {last})"
            )),
            Err(e) => log(&format!(
                "berth: kept layer {last} of the failed build: {}",
                self.error(e)
            )),
        }
    }

    /// Removes a tag (and the image if nothing else uses it); missing is Ok.
    pub async fn remove_image(&self, reference: &str) -> Result<(), EngineError> {
        self.count();
        let options = RemoveImageOptionsBuilder::new().noprune(false).build();
        match self
            .docker
            .remove_image(reference, Some(options), None)
            .await
        {
            Ok(_) => Ok(()),
            Err(e) => match self.error(e) {
                EngineError::NotFound(_) => Ok(()),
                other => Err(other),
            },
        }
    }
}

/// The classic builder ends each step with ` ---> <short image id>`.
fn layer_id(line: &str) -> Option<&str> {
    let id = line.strip_prefix(" ---> ")?.trim();
    (id.len() >= 12 && id.bytes().all(|b| b.is_ascii_hexdigit())).then_some(id)
}

/// `Step 1/3 : FROM base` (the classic builder's step header).
fn is_from_step(line: &str) -> bool {
    line.starts_with("Step ")
        && line
            .split_once(" : ")
            .is_some_and(|(_, step)| step.trim_start().to_ascii_uppercase().starts_with("FROM "))
}

#[cfg(test)]
mod tests {
    use super::{is_from_step, layer_id, split_reference};

    #[test]
    fn from_steps_are_recognised_in_any_case() {
        assert!(is_from_step("Step 1/3 : FROM berth/base:1"));
        assert!(is_from_step("Step 4/6 : from builder AS out"));
        assert!(!is_from_step("Step 2/3 : RUN echo FROM x"));
        assert!(!is_from_step(" ---> 3f2a1b0c9d8e"));
    }

    #[test]
    fn layer_ids_are_the_builder_step_results_only() {
        assert_eq!(layer_id(" ---> 3f2a1b0c9d8e"), Some("3f2a1b0c9d8e"));
        assert_eq!(layer_id(" ---> Running in 3f2a1b0c9d8e"), None);
        assert_eq!(layer_id(" ---> Using cache"), None);
        assert_eq!(layer_id("Step 2/3 : RUN true"), None);
    }

    #[test]
    fn references_split_at_the_tag_not_the_registry_port() {
        assert_eq!(split_reference("berth/app:1"), ("berth/app", "1"));
        assert_eq!(
            split_reference("127.0.0.1:5000/app:2"),
            ("127.0.0.1:5000/app", "2")
        );
        assert_eq!(
            split_reference("127.0.0.1:5000/app"),
            ("127.0.0.1:5000/app", "latest")
        );
    }
}
