//! What a recipe build asks of the real engine: a step container kept
//! alive by `sh -c 'read _'` on an open stdin (nothing but `/bin/sh` is
//! asked of the image), commands run in it by exec, files copied in, its
//! file system committed with Dockerfile `changes`, and images found by
//! label. The [`crate::engine::Engine`] impl calls these.

use std::collections::{BTreeMap, HashMap};

use bollard::container::LogOutput;
use bollard::exec::{StartExecOptions, StartExecResults};
use bollard::models::{
    ContainerCreateBody, ExecConfig, HostConfig, Mount as DockerMount, MountType,
    VolumeCreateRequest,
};
use bollard::query_parameters::{
    CommitContainerOptionsBuilder, CreateContainerOptionsBuilder, ListImagesOptionsBuilder,
    RemoveVolumeOptionsBuilder, UploadToContainerOptionsBuilder,
};
use futures_util::StreamExt;

use super::DockerEngine;
use crate::engine::{
    EngineError, Exec, ImageRun, LabelledImage, StepContainer, ToolMount, VolumeFill,
};

/// The step container's own process: a shell builtin waiting on a stdin
/// that stays open as long as the container runs.
const KEEP_ALIVE: [&str; 3] = ["/bin/sh", "-c", "read _"];

/// Where a tool volume is mounted while a tar is unpacked into it.
const FILL_AT: &str = "/berth-tool-fill";

/// The longest line of a step's output kept whole.
const LINE_CAP: usize = 8 << 10;

impl DockerEngine {
    pub(super) async fn create_step(&self, c: &StepContainer<'_>) -> Result<String, EngineError> {
        let mounts = c
            .tools
            .iter()
            .map(|ToolMount { volume, at }| DockerMount {
                typ: Some(MountType::VOLUME),
                source: Some(volume.clone()),
                target: Some(at.clone()),
                read_only: Some(true),
                ..Default::default()
            })
            .collect();
        let body = ContainerCreateBody {
            image: Some(c.image.to_string()),
            entrypoint: Some(KEEP_ALIVE.iter().map(ToString::to_string).collect()),
            cmd: Some(Vec::new()),
            open_stdin: Some(true),
            labels: Some(
                c.labels
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            ),
            host_config: Some(HostConfig {
                network_mode: Some(if c.network { "bridge" } else { "none" }.to_string()),
                memory: (c.memory > 0).then_some(c.memory),
                cpu_period: (c.cpu_quota > 0).then_some(100_000),
                cpu_quota: (c.cpu_quota > 0).then_some(c.cpu_quota),
                mounts: Some(mounts),
                security_opt: Some(vec![super::create::NO_NEW_PRIVILEGES.to_string()]),
                ..Default::default()
            }),
            ..Default::default()
        };
        self.count();
        let options = CreateContainerOptionsBuilder::new().name(c.name).build();
        match self.docker.create_container(Some(options), body).await {
            Ok(response) => Ok(response.id),
            Err(e) => Err(self.error(e)),
        }
    }

    pub(super) async fn exec_in(
        &self,
        id: &str,
        exec: &Exec<'_>,
        log: &mut dyn FnMut(&str),
    ) -> Result<i64, EngineError> {
        self.count();
        let config = ExecConfig {
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            cmd: Some(exec.cmd.to_vec()),
            user: exec.user.map(str::to_string),
            working_dir: exec.workdir.map(str::to_string),
            env: Some(exec.env.to_vec()),
            ..Default::default()
        };
        let created = self
            .docker
            .create_exec(id, config)
            .await
            .map_err(|e| self.error(e))?;
        // The call lasts as long as the command: the client's own deadline
        // is the step's.
        let docker = self.docker.clone().with_timeout(exec.timeout);
        self.count();
        let started = docker
            .start_exec(
                &created.id,
                Some(StartExecOptions {
                    detach: false,
                    tty: false,
                    output_capacity: Some(LINE_CAP),
                }),
            )
            .await
            .map_err(|e| self.error(e))?;
        let StartExecResults::Attached { mut output, .. } = started else {
            return Err(EngineError::Api("exec did not attach".into()));
        };
        let mut partial = String::new();
        let read = async {
            while let Some(item) = output.next().await {
                let chunk = match item.map_err(|e| self.error(e))? {
                    LogOutput::StdOut { message }
                    | LogOutput::StdErr { message }
                    | LogOutput::Console { message } => message,
                    LogOutput::StdIn { .. } => continue,
                };
                partial.push_str(&String::from_utf8_lossy(&chunk));
                while let Some(end) = partial.find('\n') {
                    log(partial[..end].trim_end_matches('\r'));
                    partial.drain(..=end);
                }
                if partial.len() > LINE_CAP {
                    log(&partial);
                    partial.clear();
                }
            }
            Ok::<(), EngineError>(())
        };
        match tokio::time::timeout(exec.timeout, read).await {
            Ok(done) => done?,
            Err(_) => {
                // Stopping the container ends the command and all it started.
                let _ = self.stop_step(id).await;
                return Err(EngineError::Api(format!(
                    "the command did not end within {} s",
                    exec.timeout.as_secs()
                )));
            }
        }
        if !partial.is_empty() {
            log(&partial);
        }
        self.count();
        let inspected = self
            .docker
            .inspect_exec(&created.id)
            .await
            .map_err(|e| self.error(e))?;
        inspected
            .exit_code
            .ok_or_else(|| EngineError::Api("exec ended without an exit code".into()))
    }

    async fn stop_step(&self, id: &str) -> Result<(), EngineError> {
        self.count();
        let options = bollard::query_parameters::StopContainerOptionsBuilder::new()
            .t(1)
            .build();
        self.docker
            .stop_container(id, Some(options))
            .await
            .map_err(|e| self.error(e))
    }

    pub(super) async fn upload_tar(&self, id: &str, tar: Vec<u8>) -> Result<(), EngineError> {
        self.upload_tar_at(id, "/", tar).await
    }

    async fn upload_tar_at(&self, id: &str, at: &str, tar: Vec<u8>) -> Result<(), EngineError> {
        self.count();
        let options = UploadToContainerOptionsBuilder::new().path(at).build();
        self.docker
            .upload_to_container(
                id,
                Some(options),
                bollard::body_full(hyper::body::Bytes::from(tar)),
            )
            .await
            .map_err(|e| self.error(e))
    }

    pub(super) async fn commit_step(
        &self,
        id: &str,
        commit: &crate::recipe::Commit,
    ) -> Result<String, EngineError> {
        let quoting = match self.kind().await? {
            super::podman::EngineKind::Docker => crate::recipe::Quoting::Dockerfile,
            super::podman::EngineKind::Podman => crate::recipe::Quoting::Literal,
        };
        let changes = crate::recipe::changes(commit, quoting);
        self.count();
        // One value, a line per change: Docker joins its values with
        // newlines and parses them as a Dockerfile, and so does Podman.
        let options = CommitContainerOptionsBuilder::new()
            .container(id)
            // The step's command has ended: nothing writes while it commits.
            .pause(false)
            .changes(&changes.join("\n"))
            .build();
        let done = self
            .docker
            .commit_container(options, bollard::models::ContainerConfig::default())
            .await
            .map_err(|e| self.error(e))?;
        // Podman answers the bare hex.
        Ok(if done.id.starts_with("sha256:") {
            done.id
        } else {
            format!("sha256:{}", done.id)
        })
    }

    pub(super) async fn labelled_images(
        &self,
        label: &str,
        value: Option<&str>,
    ) -> Result<Vec<LabelledImage>, EngineError> {
        self.count();
        let filter = match value {
            Some(v) => format!("{label}={v}"),
            None => label.to_string(),
        };
        let filters: HashMap<&str, Vec<&str>> = [("label", vec![filter.as_str()])].into();
        let options = ListImagesOptionsBuilder::new()
            .all(true)
            .filters(&filters)
            .build();
        let images = self
            .docker
            .list_images(Some(options))
            .await
            .map_err(|e| self.error(e))?;
        Ok(images
            .into_iter()
            .map(|i| LabelledImage {
                id: i.id,
                tags: i
                    .repo_tags
                    .into_iter()
                    .filter(|t| t != "<none>:<none>")
                    .collect(),
                created: i.created,
                labels: i.labels.into_iter().collect(),
                parent: i.parent_id,
            })
            .collect())
    }

    pub(super) async fn inspect_image_run(
        &self,
        reference: &str,
    ) -> Result<Option<ImageRun>, EngineError> {
        self.count();
        match self.docker.inspect_image(reference).await {
            Ok(image) => {
                let config = image.config.unwrap_or_default();
                Ok(Some(ImageRun {
                    entrypoint: config.entrypoint,
                    cmd: config.cmd,
                }))
            }
            Err(e) => match self.error(e) {
                EngineError::NotFound(_) => Ok(None),
                other => Err(other),
            },
        }
    }

    pub(super) async fn inspect_container_labels(
        &self,
        name: &str,
    ) -> Result<Option<BTreeMap<String, String>>, EngineError> {
        self.count();
        match self.docker.inspect_container(name, None).await {
            Ok(c) => Ok(Some(
                c.config
                    .and_then(|c| c.labels)
                    .unwrap_or_default()
                    .into_iter()
                    .collect(),
            )),
            Err(e) => match self.error(e) {
                EngineError::NotFound(_) => Ok(None),
                other => Err(other),
            },
        }
    }

    pub(super) async fn fill_tool_volume(
        &self,
        volume: &str,
        labels: &BTreeMap<String, String>,
        fill: VolumeFill<'_>,
    ) -> Result<(), EngineError> {
        self.count();
        let volume_made = self
            .docker
            .create_volume(VolumeCreateRequest {
                name: Some(volume.to_string()),
                labels: Some(labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect()),
                ..Default::default()
            })
            .await
            .map_err(|e| self.error(e))?;
        // The engine answers an existing volume of the name as if it made
        // it: one without the build's labels is someone else's.
        if !has_labels(&volume_made.labels, labels) {
            return Err(EngineError::Conflict(format!(
                "a volume {volume} exists that this build did not make; berth leaves it alone"
            )));
        }
        let (image, path) = match &fill {
            VolumeFill::Image { image, path } => (*image, *path),
            VolumeFill::Tar { image, .. } => (*image, FILL_AT),
        };
        let body = ContainerCreateBody {
            image: Some(image.to_string()),
            // No program: the container is never meant to run anything.
            entrypoint: Some(vec!["/".to_string()]),
            labels: Some(labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect()),
            host_config: Some(HostConfig {
                network_mode: Some("none".to_string()),
                mounts: Some(vec![DockerMount {
                    typ: Some(MountType::VOLUME),
                    source: Some(volume.to_string()),
                    target: Some(path.to_string()),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        };
        self.count();
        let created = self
            .docker
            .create_container(
                None::<bollard::query_parameters::CreateContainerOptions>,
                body,
            )
            .await
            .map_err(|e| self.error(e))?;
        let filled = match fill {
            // Mounting the new, empty volume copies the image's folder in:
            // Docker at the create, Podman only at a start, which fails at
            // once (no program) after the mount.
            VolumeFill::Image { .. } => {
                self.count();
                let _ = self.docker.start_container(&created.id, None).await;
                Ok(())
            }
            // The engine unpacks into the volume mounted there.
            VolumeFill::Tar { tar, .. } => self.upload_tar_at(&created.id, FILL_AT, tar).await,
        };
        let removed = crate::engine::Engine::remove_container(self, &created.id).await;
        filled?;
        removed
    }

    pub(super) async fn remove_build_volume(
        &self,
        name: &str,
        labels: &BTreeMap<String, String>,
    ) -> Result<(), EngineError> {
        self.count();
        match self.docker.inspect_volume(name).await {
            Ok(v) if has_labels(&v.labels, labels) => {}
            // Not the build's: never removed.
            Ok(_) => return Ok(()),
            Err(e) => {
                return match self.error(e) {
                    EngineError::NotFound(_) => Ok(()),
                    other => Err(other),
                }
            }
        }
        self.count();
        let options = RemoveVolumeOptionsBuilder::new().force(false).build();
        match self.docker.remove_volume(name, Some(options)).await {
            Ok(()) => Ok(()),
            Err(e) => match self.error(e) {
                EngineError::NotFound(_) => Ok(()),
                other => Err(other),
            },
        }
    }
}

/// Whether a volume's labels hold every one of `wanted`.
fn has_labels(labels: &HashMap<String, String>, wanted: &BTreeMap<String, String>) -> bool {
    wanted.iter().all(|(k, v)| labels.get(k) == Some(v))
}
