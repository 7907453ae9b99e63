//! [`ImageError`]: why a build, import, load or push did not happen, its
//! cause kept typed (the engine's error, git's, the file's).

use std::path::PathBuf;

use super::credentials::CredentialsError;
use super::tenant::Refusal;
use crate::command::CommandError;
use crate::db::DbError;
use crate::declared::SpecError;
use crate::engine::EngineError;
use crate::state::StateError;

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("push {target}: {error}")]
    Push { target: String, error: EngineError },
    #[error(transparent)]
    Credentials(#[from] CredentialsError),
    #[error("{}: {error}", path.display())]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    /// git could not be run, or ran out of time.
    #[error("{what}: {error} (git_timeout_seconds)")]
    Git {
        what: &'static str,
        error: CommandError,
    },
    /// git ran and failed; its last line says why.
    #[error("{what} failed: {last_line}")]
    GitFailed {
        what: &'static str,
        last_line: String,
    },
    /// A path a record names (Context, Dockerfile) that berth refuses.
    #[error("{what}: {problem}")]
    BadPath { what: String, problem: PathProblem },
    /// A build the policy refuses (or cannot judge): nothing read, built
    /// or loaded.
    #[error("refused: {0}")]
    Refused(#[from] Refusal),
    #[error("no docker_images record {0}")]
    NoRecord(String),
    /// The record does not validate (its first error).
    #[error("{0}")]
    BadSpec(Box<SpecError>),
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    State(#[from] StateError),
    /// A recipe's manifest or a file it names.
    #[error(transparent)]
    Recipe(#[from] crate::recipe::RecipeError),
    /// A recipe step exited non-zero, or could not run.
    #[error("{what}{kept}")]
    StepFailed {
        what: String,
        /// Where the container was kept, if it was.
        kept: String,
    },
    /// A recipe check failed: the image is not tagged.
    #[error("{what}; nothing was tagged")]
    CheckFailed { what: String },
    /// The image a recipe starts from is not here.
    #[error("the base image {reference} is not here{hint}")]
    BaseMissing { reference: String, hint: String },
    #[error("no runtime for builds: {0}")]
    Runtime(std::io::Error),
}

/// Why a path inside a clone is refused.
#[derive(Debug, thiserror::Error)]
pub enum PathProblem {
    #[error("must be a path inside the repository (no leading / and no ..)")]
    NotInside,
    #[error("not found in the repository: {0}")]
    NotFound(std::io::Error),
    #[error("leads out of the repository through a symbolic link; berth builds only what the repository holds")]
    LeadsOut,
    #[error("{0}")]
    Unreadable(std::io::Error),
    #[error("larger than {0} bytes")]
    TooLarge(u64),
}
