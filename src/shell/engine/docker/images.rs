//! Image operations of the real engine: build, import, load, save, push,
//! tag, inspect, remove. Used by `images`, never by the planner; the
//! [`crate::engine::Engine`] impl calls these.

use bollard::auth::DockerCredentials;
use bollard::body_try_stream;
use bollard::query_parameters::{
    BuildImageOptionsBuilder, CreateImageOptionsBuilder, ImportImageOptionsBuilder,
    ListImagesOptionsBuilder, PushImageOptionsBuilder, RemoveImageOptionsBuilder,
    TagImageOptionsBuilder,
};
use futures_util::StreamExt;

use super::DockerEngine;
use crate::engine::{BuildRequest, ByteStream, EngineError, RegistryLogin};
use crate::reference::ImageRef;

/// The engine's `fromImage`/`repo` and `tag` for a reference: the name
/// as written (registry host kept) without tag or digest, and the digest
/// if pinned (the engine pulls by digest when `tag` is one), else the tag,
/// else `latest`. The split is `ImageRef`'s, so a registry port or a
/// digest's `:` is never taken for a tag.
fn split_reference(reference: &str) -> Result<(String, String), EngineError> {
    let image = ImageRef::parse(reference).map_err(|e| EngineError::Api(e.to_string()))?;
    let mut name = reference;
    if let Some(d) = &image.digest {
        name = name.strip_suffix(d.as_str()).unwrap_or(name);
        name = name.strip_suffix('@').unwrap_or(name);
    }
    if let Some(t) = &image.tag {
        name = name.strip_suffix(t.as_str()).unwrap_or(name);
        name = name.strip_suffix(':').unwrap_or(name);
    }
    let tag = image
        .digest
        .or(image.tag)
        .unwrap_or_else(|| "latest".to_string());
    Ok((name.to_string(), tag))
}

/// Repository and tag for what gives an image a name here (tag, import,
/// push): a digest is what a registry computes, never a name to give.
fn split_named(reference: &str) -> Result<(String, String), EngineError> {
    if reference.contains('@') {
        return Err(EngineError::Api(format!(
            "{reference}: an image pinned by digest cannot be tagged, imported or pushed under that name"
        )));
    }
    split_reference(reference)
}

impl DockerEngine {
    /// The image ID a reference names now, if any.
    pub(super) async fn inspect_image_id(
        &self,
        reference: &str,
    ) -> Result<Option<String>, EngineError> {
        self.count();
        match self.docker.inspect_image(reference).await {
            Ok(image) => Ok(image.id),
            Err(e) => match self.error(e) {
                EngineError::NotFound(_) => Ok(None),
                other => Err(other),
            },
        }
    }

    /// The user the image `reference` names (`Config.User`, "" for none).
    /// A missing image is NotFound, as the create would have said.
    pub(super) async fn inspect_image_user(&self, reference: &str) -> Result<String, EngineError> {
        self.count();
        match self.docker.inspect_image(reference).await {
            Ok(image) => Ok(image.config.and_then(|c| c.user).unwrap_or_default()),
            Err(e) => match self.error(e) {
                EngineError::NotFound(_) => {
                    Err(EngineError::NotFound(format!("image {reference}")))
                }
                other => Err(other),
            },
        }
    }

    /// `RepoDigests` of the image `reference` names; a missing image has none.
    pub(super) async fn inspect_image_digests(
        &self,
        reference: &str,
    ) -> Result<Vec<String>, EngineError> {
        self.count();
        match self.docker.inspect_image(reference).await {
            Ok(image) => Ok(image.repo_digests.unwrap_or_default()),
            Err(e) => match self.error(e) {
                EngineError::NotFound(_) => Ok(Vec::new()),
                other => Err(other),
            },
        }
    }

    /// Builds and tags; `log` gets every line the build prints. The tag only
    /// moves if the build succeeds.
    pub(super) async fn build(
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
        if req.pull_base {
            options = options.pull("1");
        }
        if req.memory > 0 {
            options = options.memory(i32::try_from(req.memory).unwrap_or(i32::MAX));
        }
        if req.cpu_quota > 0 {
            options = options
                .cpuperiod(100_000)
                .cpuquota(i32::try_from(req.cpu_quota).unwrap_or(i32::MAX));
        }
        // What the engine holds before: a failed build's layers are what
        // is new afterwards (never what the build printed, which a RUN step
        // controls).
        let before = self.image_tree().await?;
        let started = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        let mut stream = self.docker.build_image(
            options.build(),
            None,
            Some(body_try_stream(req.context_tar)),
        );
        let mut id = None;
        let mut failure = None;
        while let Some(item) = stream.next().await {
            // bollard reports a failed step either as an error item or as
            // an error detail in an item; both leave layers to clean up.
            let info = match item {
                Ok(info) => info,
                Err(e) => {
                    failure = Some(self.error(e));
                    break;
                }
            };
            let said = progress(info.stream, info.status, info.error_detail, "build", log);
            if let Err(e) = said {
                failure = Some(e);
                break;
            }
            if let Some(aux) = info.aux.and_then(|a| a.id) {
                id = Some(aux);
            }
        }
        if let Some(e) = failure {
            log(&format!("ERROR: {e}"));
            self.remove_failed_layers(&before, started, &req.base_ids, log)
                .await;
            return Err(e);
        }
        match id {
            Some(id) => Ok(id),
            None => self.inspect_image_id(req.tag).await?.ok_or_else(|| {
                EngineError::Api(format!("build ended without an image for {}", req.tag))
            }),
        }
    }

    /// `docker import`: a root filesystem tar becomes the image `reference`.
    pub(super) async fn import(
        &self,
        tar: ByteStream,
        reference: &str,
        log: &mut dyn FnMut(&str),
    ) -> Result<String, EngineError> {
        self.count();
        // The tag inside `repo` (the API allows it): Podman's import
        // ignores a separate `tag` and would tag `latest`.
        let (repo, tag) = split_named(reference)?;
        let options = CreateImageOptionsBuilder::new()
            .from_src("-")
            .repo(&format!("{repo}:{tag}"))
            .build();
        let mut stream = self
            .docker
            .create_image(Some(options), Some(body_try_stream(tar)), None);
        while let Some(item) = stream.next().await {
            let info = item.map_err(|e| self.error(e))?;
            progress(None, info.status, info.error_detail, "import", log)?;
        }
        self.inspect_image_id(reference).await?.ok_or_else(|| {
            EngineError::Api(format!("import ended without an image for {reference}"))
        })
    }

    /// `docker pull`: the login travels in the X-Registry-Auth header, never
    /// in argv or a log line. Progress lines are dropped (a pull of a big
    /// image prints thousands); an error is the engine's own words.
    pub(super) async fn pull(
        &self,
        reference: &str,
        login: Option<RegistryLogin>,
    ) -> Result<String, EngineError> {
        self.count();
        let (repo, tag) = split_reference(reference)?;
        let options = CreateImageOptionsBuilder::new()
            .from_image(&repo)
            .tag(&tag)
            .build();
        let credentials = login.map(credentials);
        let mut stream = self.docker.create_image(Some(options), None, credentials);
        while let Some(item) = stream.next().await {
            let info = item.map_err(|e| self.error(e))?;
            progress(None, None, info.error_detail, "pull", &mut |_| {})?;
        }
        self.inspect_image_id(reference)
            .await?
            .ok_or_else(|| EngineError::Api(format!("pull ended without an image for {reference}")))
    }

    /// `docker load`: a saved-image tar; returns what the engine printed.
    pub(super) async fn load(
        &self,
        tar: ByteStream,
        log: &mut dyn FnMut(&str),
    ) -> Result<(), EngineError> {
        self.count();
        let options = ImportImageOptionsBuilder::new().quiet(true).build();
        let mut stream = self
            .docker
            .import_image(options, body_try_stream(tar), None);
        while let Some(item) = stream.next().await {
            let info = item.map_err(|e| self.error(e))?;
            progress(info.stream, None, info.error_detail, "load", log)?;
        }
        Ok(())
    }

    /// `docker save`: the image as a tar, written to `out`.
    pub(super) async fn save(
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

    pub(super) async fn tag(&self, source: &str, reference: &str) -> Result<(), EngineError> {
        self.count();
        let (repo, tag) = split_named(reference)?;
        let options = TagImageOptionsBuilder::new().repo(&repo).tag(&tag).build();
        self.docker
            .tag_image(source, Some(options))
            .await
            .map_err(|e| self.error(e))
    }

    pub(super) async fn push(
        &self,
        reference: &str,
        login: Option<RegistryLogin>,
        log: &mut dyn FnMut(&str),
    ) -> Result<(), EngineError> {
        self.count();
        let (repo, tag) = split_named(reference)?;
        let credentials = login.map(credentials);
        let options = PushImageOptionsBuilder::new().tag(&tag).build();
        let mut stream = self.docker.push_image(&repo, Some(options), credentials);
        while let Some(item) = stream.next().await {
            let info = item.map_err(|e| self.error(e))?;
            progress(None, info.status, info.error_detail, "push", log)?;
        }
        Ok(())
    }

    /// Every image the engine holds, intermediate layers included (one call).
    async fn image_tree(&self) -> Result<Vec<ImageNode>, EngineError> {
        self.count();
        let options = ListImagesOptionsBuilder::new().all(true).build();
        let images = self
            .docker
            .list_images(Some(options))
            .await
            .map_err(|e| self.error(e))?;
        Ok(images
            .into_iter()
            .map(|i| ImageNode {
                tagged: i.repo_tags.iter().any(|t| t != "<none>:<none>"),
                id: i.id,
                parent: i.parent_id,
                created: i.created,
            })
            .collect())
    }

    /// The layers a failed build left, as the engine lists them: removing
    /// the newest also removes its untagged parents that nothing else uses
    /// (one another image builds on or a container runs is refused by the
    /// engine, and kept).
    async fn remove_failed_layers(
        &self,
        before: &[ImageNode],
        started: i64,
        bases: &[String],
        log: &mut dyn FnMut(&str),
    ) {
        let after = match self.image_tree().await {
            Ok(a) => a,
            Err(e) => {
                log(&format!(
                    "berth: cannot list the layers of the failed build: {e}"
                ));
                return;
            }
        };
        for layer in failed_build_layers(before, &after, started, bases) {
            self.count();
            let options = RemoveImageOptionsBuilder::new().noprune(false).build();
            match self.docker.remove_image(&layer, Some(options), None).await {
                Ok(_) => log(&format!(
                    "berth: removed the layers of the failed build (up to {})",
                    crate::plan::short(&layer)
                )),
                Err(e) => log(&format!(
                    "berth: kept layer {} of the failed build: {}",
                    crate::plan::short(&layer),
                    self.error(e)
                )),
            }
        }
    }

    /// Removes a tag (and the image if nothing else uses it); missing is Ok.
    pub(super) async fn remove_reference(&self, reference: &str) -> Result<(), EngineError> {
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

/// One image of the engine's list, as the cleanup needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ImageNode {
    pub id: String,
    pub parent: String,
    pub tagged: bool,
    /// Unix seconds.
    pub created: i64,
}

/// The newest layers a failed build made, from the engine's lists before
/// and after it: untagged images that are new, created since the build
/// started, that descend from one of the build's base images, and on which
/// no other such image builds. (Two builds from the same base at the same
/// moment could see each other's layers; the engine refuses to remove one
/// that a running build step uses.)
pub(super) fn failed_build_layers(
    before: &[ImageNode],
    after: &[ImageNode],
    started: i64,
    bases: &[String],
) -> Vec<String> {
    use std::collections::{HashMap, HashSet};
    let old: HashSet<&str> = before.iter().map(|i| i.id.as_str()).collect();
    let parent: HashMap<&str, &str> = after
        .iter()
        .map(|i| (i.id.as_str(), i.parent.as_str()))
        .collect();
    let descends = |id: &str| {
        let mut at = id;
        // Bounded: a layer chain is at most as long as the list.
        for _ in 0..=after.len() {
            match parent.get(at) {
                Some(p) if bases.iter().any(|b| b == p) => return true,
                Some(p) if !p.is_empty() => at = p,
                _ => return false,
            }
        }
        false
    };
    let made: Vec<&ImageNode> = after
        .iter()
        .filter(|i| {
            !i.tagged && !old.contains(i.id.as_str()) && i.created >= started - 1 && descends(&i.id)
        })
        .collect();
    let parents: HashSet<&str> = made.iter().map(|i| i.parent.as_str()).collect();
    made.iter()
        .filter(|i| !parents.contains(i.id.as_str()))
        .map(|i| i.id.clone())
        .collect()
}

/// One item of a streamed image call (build, import, load, push): its
/// output and status lines to the log, its error detail as the call's
/// error, in the engine's words (else "`what` failed").
/// What the engine sends a registry on berth's behalf (base64 JSON in a
/// header).
fn credentials(login: RegistryLogin) -> DockerCredentials {
    DockerCredentials {
        username: Some(login.username),
        password: Some(login.password),
        serveraddress: Some(login.server),
        ..Default::default()
    }
}

fn progress(
    stream: Option<String>,
    status: Option<String>,
    error: Option<bollard::models::ErrorDetail>,
    what: &str,
    log: &mut dyn FnMut(&str),
) -> Result<(), EngineError> {
    for line in stream.iter().flat_map(|text| text.lines()) {
        log(line);
    }
    if let Some(status) = &status {
        log(status);
    }
    match error {
        Some(detail) => Err(EngineError::Api(
            detail.message.unwrap_or_else(|| format!("{what} failed")),
        )),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::{failed_build_layers, split_named, split_reference, ImageNode};

    fn node(id: &str, parent: &str, tagged: bool, created: i64) -> ImageNode {
        ImageNode {
            id: id.into(),
            parent: parent.into(),
            tagged,
            created,
        }
    }

    #[test]
    fn a_failed_build_leaves_only_what_the_engine_says_it_made() {
        let before = vec![
            node("base", "", true, 10),
            node("good", "base", true, 20),
            node("decoy", "", false, 30), // untagged, someone else's
        ];
        let mut after = before.clone();
        after.push(node("step1", "base", false, 100));
        after.push(node("step2", "step1", false, 101));
        // Another build's layer from another base, in the same window.
        after.push(node("other", "elsewhere", false, 100));
        assert_eq!(
            failed_build_layers(&before, &after, 100, &["base".into()]),
            vec!["step2".to_string()]
        );
        // Nothing new: nothing removed (the decoy is never a candidate).
        assert!(failed_build_layers(&before, &before, 100, &["base".into()]).is_empty());
    }

    #[test]
    fn references_split_at_the_tag_not_the_registry_port_or_the_digest() {
        let split = |r: &str| {
            let (repo, tag) = split_reference(r).expect(r);
            (repo, tag)
        };
        let pair = |a: &str, b: &str| (a.to_string(), b.to_string());
        let hex = "a".repeat(64);
        let digest = format!("sha256:{hex}");
        assert_eq!(split("nginx"), pair("nginx", "latest"));
        assert_eq!(split("berth/app:1"), pair("berth/app", "1"));
        assert_eq!(
            split("127.0.0.1:5000/app:2"),
            pair("127.0.0.1:5000/app", "2")
        );
        assert_eq!(
            split("127.0.0.1:5000/app"),
            pair("127.0.0.1:5000/app", "latest")
        );
        assert_eq!(split(&format!("nginx@{digest}")), pair("nginx", &digest));
        assert_eq!(split(&format!("nginx:1@{digest}")), pair("nginx", &digest));
        assert_eq!(
            split(&format!("reg.example:5000/t/app:1@{digest}")),
            pair("reg.example:5000/t/app", &digest)
        );
        assert!(split_reference("Bad Name").is_err());
        // A digest is never a name to give.
        assert!(split_named(&format!("nginx@{digest}")).is_err());
        assert_eq!(
            split_named("127.0.0.1:5000/app:2").expect("named"),
            pair("127.0.0.1:5000/app", "2")
        );
    }
}
