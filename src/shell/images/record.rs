//! `docker_images` records (type `image`) → validated image specs: where an
//! image comes from, what it is tagged, whether it follows its base.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::db::{Db, Record};
use crate::declared::{property, PullPolicy, SpecError};

pub const IMAGE_TYPE: &str = "image";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "kind")]
pub enum Source {
    /// `git clone` Repository at Ref, build Dockerfile in Context.
    Git {
        repository: String,
        reference: Option<String>,
        dockerfile: String,
        context: String,
    },
    /// A folder (tarred) or a tarball, `docker import`ed: SME's base image recipe.
    Rootfs { path: PathBuf },
    /// A `docker save` tar, `docker load`ed.
    Tar { path: PathBuf },
    /// A folder holding `recipe.toml`: steps run in a container from its
    /// base, committed stage by stage (`images::recipe`). The manifest is
    /// rendered with the record's `properties` and `vars`.
    Recipe {
        path: PathBuf,
        properties: BTreeMap<String, String>,
        vars: BTreeMap<String, String>,
    },
}

impl Source {
    /// The word the `Source` property (and the policy's `[images]
    /// sources`) knows it by.
    pub fn kind(&self) -> &'static str {
        match self {
            Source::Git { .. } => "git",
            Source::Rootfs { .. } => "rootfs",
            Source::Tar { .. } => "tar",
            Source::Recipe { .. } => "recipe",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageSpec {
    pub name: String,
    pub file: PathBuf,
    pub line: usize,
    pub source: Source,
    /// The reference it produces, `repo:tag`.
    pub tag: String,
    pub push_to: Option<String>,
    pub auto_rebuild: bool,
    pub build_args: BTreeMap<String, String>,
    /// Name of an entry of the credentials file (never the secret itself).
    pub credentials: Option<String>,
    /// `Pull always`: each build pulls its `FROM` images first. `missing`
    /// and `never` (the default) leave that to the engine, which pulls a
    /// base only when it has none.
    #[serde(default = "pull_never")]
    pub pull: PullPolicy,
    /// `Update`: whether the registry is watched for a moved tag of this
    /// image's base (its `FROM`, as its last build recorded it).
    #[serde(default)]
    pub update: property::UpdatePolicy,
    /// `Profile`: the policy profile the image is made for. A `Source tar`
    /// image whose profile (this, else the policy's `default_profile`)
    /// confines is a tenant image, checked before it is loaded. Checked
    /// against the policy at build time: the policy is not known here.
    #[serde(default)]
    pub profile: Option<String>,
    /// `NoCache yes`: a recipe build runs every step, whatever its cache holds.
    #[serde(default)]
    pub no_cache: bool,
}

fn pull_never() -> PullPolicy {
    PullPolicy::Never
}

#[derive(Debug, Clone, Default)]
pub struct DeclaredImages {
    pub specs: BTreeMap<String, ImageSpec>,
    pub failed: BTreeMap<String, Vec<SpecError>>,
}

const KNOWN: &[&str] = &[
    "Source",
    "Repository",
    "Ref",
    "Dockerfile",
    "Context",
    "Path",
    "Tag",
    "PushTo",
    "AutoRebuild",
    "BuildArgs",
    "Credentials",
    "Pull",
    "Update",
    "Profile",
    "NoCache",
    "Vars",
];

/// Reads every record of `docker_images`; relative `Path`s are taken from
/// the db's folder.
pub fn declare(images: &Db) -> DeclaredImages {
    let mut out = DeclaredImages::default();
    for record in images.records() {
        match build(images.path(), record) {
            Ok(spec) => {
                out.specs.insert(record.key.clone(), spec);
            }
            Err(errors) => {
                out.failed.insert(record.key.clone(), errors);
            }
        }
    }
    out
}

fn build(file: &Path, r: &Record) -> Result<ImageSpec, Vec<SpecError>> {
    let mut errors = Vec::new();
    let mut fail = |prop: Option<&str>, value: Option<&str>, why: String| {
        errors.push(crate::declared::error(
            file, r.line, &r.key, prop, value, why,
        ));
    };
    let get = |p: &str| r.prop(p).map(str::trim).filter(|v| !v.is_empty());
    if r.rtype != IMAGE_TYPE {
        fail(
            None,
            Some(&r.rtype),
            format!("record type must be {IMAGE_TYPE:?}"),
        );
    }
    if let Err(why) = property::name(&r.key) {
        fail(
            None,
            None,
            format!("the key is not usable as an image name: {why}"),
        );
    }
    let tag = match get("Tag").map(crate::declared::parse_image_reference) {
        Some(Ok(t)) => Some(t),
        Some(Err(why)) => {
            fail(Some("Tag"), get("Tag"), why.to_string());
            None
        }
        None => {
            fail(
                Some("Tag"),
                None,
                "every image needs a Tag, the reference it produces (e.g. berth/app:1)".into(),
            );
            None
        }
    };
    let push_to = match get("PushTo").map(crate::declared::parse_image_reference) {
        Some(Ok(t)) => Some(t),
        Some(Err(why)) => {
            fail(Some("PushTo"), get("PushTo"), why.to_string());
            None
        }
        None => None,
    };
    let auto_rebuild = match get("AutoRebuild").map(property::yes_no) {
        Some(Ok(v)) => v,
        Some(Err(why)) => {
            fail(Some("AutoRebuild"), get("AutoRebuild"), why.to_string());
            false
        }
        None => false,
    };
    let pull = match get("Pull").map(|v| property::one_of(v, PullPolicy::WORDS)) {
        Some(Ok(word)) => PullPolicy::from_word(word).unwrap_or(PullPolicy::Never),
        Some(Err(why)) => {
            fail(Some("Pull"), get("Pull"), why.to_string());
            PullPolicy::Never
        }
        None => PullPolicy::Never,
    };
    let update = match get("Update").map(property::update_policy) {
        Some(Ok(v)) => v,
        Some(Err(why)) => {
            fail(Some("Update"), get("Update"), why.to_string());
            property::UpdatePolicy::Never
        }
        None => property::UpdatePolicy::Never,
    };
    let profile = get("Profile").map(str::to_string);
    if let Some(Err(why)) = profile.as_deref().map(property::name) {
        fail(
            Some("Profile"),
            profile.as_deref(),
            format!("not a profile name: {why}"),
        );
    }
    let no_cache = match get("NoCache").map(property::yes_no) {
        Some(Ok(v)) => v,
        Some(Err(why)) => {
            fail(Some("NoCache"), get("NoCache"), why.to_string());
            false
        }
        None => false,
    };
    let mut vars = BTreeMap::new();
    for item in get("Vars").map(property::list).into_iter().flatten() {
        match item.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() => {
                vars.insert(k.trim().to_string(), v.to_string());
            }
            _ => fail(
                Some("Vars"),
                None,
                format!("{item:?} is not K=V; expected e.g. port=8800,role=worker"),
            ),
        }
    }
    let mut build_args = BTreeMap::new();
    if let Some(raw) = get("BuildArgs") {
        for item in property::list(raw) {
            match item.split_once('=') {
                Some((k, v)) if !k.trim().is_empty() => {
                    build_args.insert(k.trim().to_string(), v.to_string());
                }
                // Build args may carry tokens: no value is quoted.
                _ => fail(
                    Some("BuildArgs"),
                    None,
                    "an item is not K=V (values not shown: build args may hold secrets); expected e.g. VERSION=1,DEBUG=0".to_string(),
                ),
            }
        }
    }
    let folder = file.parent().unwrap_or(Path::new("/"));
    let path = get("Path").map(|p| lexically_clean(&folder.join(p)));
    let kind = get("Source").map(|s| property::one_of(s, &["git", "rootfs", "tar", "recipe"]));
    let source = match (kind, path) {
        (Some(Ok("git")), _) => match get("Repository") {
            Some(repo) => {
                // Paths inside the clone: the build checks links too.
                for prop in ["Context", "Dockerfile"] {
                    if let Some(v) = get(prop) {
                        let p = Path::new(v);
                        if p.is_absolute()
                            || p.components()
                                .any(|c| matches!(c, std::path::Component::ParentDir))
                        {
                            fail(
                                Some(prop),
                                Some(v),
                                "must be a path inside the repository (no leading / and no ..)"
                                    .into(),
                            );
                        }
                    }
                }
                Some(Source::Git {
                    repository: repo.to_string(),
                    reference: get("Ref").map(str::to_string),
                    dockerfile: get("Dockerfile").unwrap_or("Dockerfile").to_string(),
                    context: get("Context").unwrap_or(".").to_string(),
                })
            }
            None => {
                fail(
                    Some("Repository"),
                    None,
                    "Source git needs a Repository (a git URL)".into(),
                );
                None
            }
        },
        (Some(Ok("rootfs")), Some(path)) => Some(Source::Rootfs { path }),
        (Some(Ok("recipe")), Some(path)) => Some(Source::Recipe {
            path,
            properties: r.props.iter().cloned().collect(),
            vars,
        }),
        (Some(Ok(_)), Some(path)) => Some(Source::Tar { path }),
        (Some(Ok(kind)), None) => {
            fail(Some("Path"), None, format!("Source {kind} needs a Path"));
            None
        }
        (Some(Err(why)), _) => {
            fail(Some("Source"), get("Source"), why.to_string());
            None
        }
        (None, _) => {
            fail(
                Some("Source"),
                None,
                "expected Source git, rootfs, tar or recipe".into(),
            );
            None
        }
    };
    for (p, _) in &r.props {
        if !KNOWN.contains(&p.as_str()) {
            tracing::debug!(record = %r.key, "docker_images: unknown property {p} kept but ignored");
        }
    }
    match (errors.is_empty(), source, tag) {
        (true, Some(source), Some(tag)) => Ok(ImageSpec {
            name: r.key.clone(),
            file: file.to_path_buf(),
            line: r.line,
            source,
            tag,
            push_to,
            auto_rebuild,
            build_args,
            credentials: get("Credentials").map(str::to_string),
            pull,
            update,
            profile,
            no_cache,
        }),
        _ => Err(errors),
    }
}

/// `a/db/../b` as `a/b`: a relative `Path` is written from the db's
/// folder, and is judged (and shown) where it leads. Where links really
/// lead is judged again when the path is opened.
fn lexically_clean(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// The base images a Dockerfile builds `FROM`, last stage last; stage
/// aliases and `scratch` are not images.
pub fn dockerfile_bases(text: &str) -> Vec<String> {
    let mut aliases = Vec::new();
    let mut bases = Vec::new();
    for line in text.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        if words
            .first()
            .is_some_and(|w| w.eq_ignore_ascii_case("FROM"))
        {
            let image = words
                .iter()
                .skip(1)
                .find(|w| !w.starts_with("--"))
                .copied()
                .unwrap_or("");
            if let Some(pos) = words.iter().position(|w| w.eq_ignore_ascii_case("AS")) {
                if let Some(alias) = words.get(pos + 1) {
                    aliases.push(alias.to_string());
                }
            }
            if !image.is_empty()
                && image != "scratch"
                && !aliases.iter().any(|a| a == image)
                && !image.contains('$')
            {
                if let Ok(r) = crate::declared::parse_image_reference(image) {
                    bases.push(r);
                }
            }
        }
    }
    bases
}

/// The one valid record `text` declares (tests of what judges records).
#[cfg(test)]
pub fn one_spec(text: &str) -> ImageSpec {
    let d = declare(&Db::parse(Path::new("/srv/db/docker_images"), text));
    assert!(d.failed.is_empty(), "{:?}", d.failed);
    d.specs.into_values().next().expect("one spec")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn declared(text: &str) -> DeclaredImages {
        declare(&Db::parse(Path::new("/srv/db/docker_images"), text))
    }

    #[test]
    fn sources_and_defaults() {
        let d = declared(
            "app=image|Source|git|Repository|file:///srv/app.git|Ref|main|Tag|berth/app:1|AutoRebuild|yes|BuildArgs|A=1,B=x=y\n\
             base=image|Source|rootfs|Path|rootfs|Tag|berth/base\n\
             saved=image|Source|tar|Path|/srv/saved.tar|Tag|berth/saved:2\n",
        );
        assert!(d.failed.is_empty(), "{:?}", d.failed);
        let app = &d.specs["app"];
        assert_eq!(
            app.source,
            Source::Git {
                repository: "file:///srv/app.git".into(),
                reference: Some("main".into()),
                dockerfile: "Dockerfile".into(),
                context: ".".into()
            }
        );
        assert!(app.auto_rebuild);
        assert_eq!(app.build_args.get("B").map(String::as_str), Some("x=y"));
        assert_eq!(
            d.specs["base"].source,
            Source::Rootfs {
                path: "/srv/db/rootfs".into()
            }
        );
        assert_eq!(d.specs["base"].tag, "berth/base:latest");
        let up = declared("r=image|Source|recipe|Path|../recipes/./r|Tag|r:1\n");
        assert!(
            matches!(&up.specs["r"].source, Source::Recipe { path, .. } if path == Path::new("/srv/recipes/r"))
        );
        assert_eq!(
            d.specs["saved"].source,
            Source::Tar {
                path: "/srv/saved.tar".into()
            }
        );
    }

    #[test]
    fn pull_is_never_unless_set() {
        let d = declared(
            "a=image|Source|tar|Path|x|Tag|a:1\nb=image|Source|tar|Path|x|Tag|b:1|Pull|Always\n\
             c=image|Source|tar|Path|x|Tag|c:1|Pull|often\n",
        );
        assert_eq!(d.specs["a"].pull, PullPolicy::Never);
        assert_eq!(d.specs["b"].pull, PullPolicy::Always);
        assert_eq!(d.failed["c"][0].property.as_deref(), Some("Pull"));
    }

    #[test]
    fn errors_name_the_property() {
        let d = declared("a=image|Source|svn|Tag|x:1\nb=image|Source|git|Tag|x:1\nc=image|Source|rootfs\nd=service|Source|tar|Path|x|Tag|y\n");
        assert_eq!(d.failed["a"][0].property.as_deref(), Some("Source"));
        assert_eq!(d.failed["b"][0].property.as_deref(), Some("Repository"));
        assert!(d.failed["c"]
            .iter()
            .any(|e| e.property.as_deref() == Some("Tag")));
        assert!(d.failed["c"]
            .iter()
            .any(|e| e.property.as_deref() == Some("Path")));
        assert!(d.failed["d"][0]
            .why
            .contains("record type must be \"image\""));
    }

    #[test]
    fn dockerfile_bases_skip_stages_and_scratch() {
        let text = "FROM berth/base:1 AS build\nRUN make\nFROM scratch AS empty\nFROM --platform=linux/amd64 berth/runtime\nCOPY --from=build /a /a\n";
        assert_eq!(
            dockerfile_bases(text),
            vec![
                "berth/base:1".to_string(),
                "berth/runtime:latest".to_string()
            ]
        );
        assert_eq!(
            dockerfile_bases("from build\n"),
            vec!["build:latest".to_string()]
        );
    }
}
