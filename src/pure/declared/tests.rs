//! Specs from records: every property of the table, its defaults and its errors.

use std::path::{Path, PathBuf};

use super::*;
use crate::model::{Mount, MountKind, NetworkAttachment, PortBinding, Protocol};

fn settings() -> SpecSettings {
    SpecSettings {
        instance: "test".into(),
        bridge_network: "berth".into(),
        data_root: PathBuf::from("/var/lib/berth/data"),
    }
}

fn declared_with_images(containers: &str, images: &str) -> Declared {
    let c = Db::parse(Path::new("/db/docker_containers"), containers);
    let i = Db::parse(Path::new("/db/docker_images"), images);
    declare(&c, &i, &settings())
}

fn spec(record: &str) -> ContainerSpec {
    let d = declared_with_images(&format!("{record}\n"), "");
    assert!(d.failed.is_empty(), "{:?}", d.failed);
    d.specs.into_values().next().expect("one spec")
}

fn errors(record: &str) -> Vec<SpecError> {
    let d = declared_with_images(&format!("{record}\n"), "");
    assert!(d.specs.is_empty(), "expected a failure: {record}");
    d.failed.into_values().next().expect("one failed record")
}

fn port(container_port: u16, protocol: Protocol, host_ip: &str, host_port: u16) -> PortBinding {
    PortBinding {
        container_port,
        protocol,
        host_ip: host_ip.into(),
        host_port,
    }
}

#[test]
fn defaults_of_a_minimal_record() {
    let s = spec("app=service|Image|berth/app");
    assert!(s.enabled);
    assert_eq!(s.config.image, "berth/app:latest");
    assert_eq!(s.config.restart, "unless-stopped");
    assert_eq!(s.config.network, NetworkAttachment::Bridge("berth".into()));
    assert_eq!(s.config.memory, None);
    assert!(s.config.ports.is_empty() && s.config.mounts.is_empty());
    assert_eq!(s.config.command, None);
    assert_eq!(s.line, 1);
}

#[test]
fn native_ports_are_private_by_default_and_public_on_request() {
    let s = spec("app=service|Image|a:1|TCPPort|80,443|UDPPort|53");
    assert_eq!(
        s.config.ports,
        vec![
            port(53, Protocol::Udp, "127.0.0.1", 53),
            port(80, Protocol::Tcp, "127.0.0.1", 80),
            port(443, Protocol::Tcp, "127.0.0.1", 443)
        ]
    );
    let s = spec("app=service|Image|a:1|TCPPort|80|access|public");
    assert_eq!(s.config.ports, vec![port(80, Protocol::Tcp, "0.0.0.0", 80)]);
    assert_eq!(s.first_tcp_host_port(), Some(("0.0.0.0".into(), 80)));
}

#[test]
fn custom_port_mapping() {
    let s = spec("app=service|Image|a:1|TCPPort|80|UDPPort|53|PortMapping|custom|PortMappingPorts|8080:80,5353:53/udp");
    assert_eq!(
        s.config.ports,
        vec![
            port(53, Protocol::Udp, "127.0.0.1", 5353),
            port(80, Protocol::Tcp, "127.0.0.1", 8080)
        ]
    );
    let e =
        errors("app=service|Image|a:1|TCPPort|80,81|PortMapping|custom|PortMappingPorts|8080:80");
    assert!(
        e[0].why
            .contains("no host port given for container port 81/tcp"),
        "{}",
        e[0]
    );
    let e = errors("app=service|Image|a:1|TCPPort|80|PortMapping|custom");
    assert_eq!(e[0].property.as_deref(), Some("PortMappingPorts"));
    let e = errors(
        "app=service|Image|a:1|TCPPort|80|PortMapping|custom|PortMappingPorts|8080:80,9090:90",
    );
    assert!(e[0].why.contains("container port 90"), "{}", e[0]);
}

#[test]
fn networks_and_their_rules() {
    assert_eq!(
        spec("a=service|Image|a:1|network|host").config.network,
        NetworkAttachment::Host
    );
    assert_eq!(
        spec("a=service|Image|a:1|network|none").config.network,
        NetworkAttachment::None
    );
    let e = errors("a=service|Image|a:1|network|none|TCPPort|80");
    assert!(
        e[0].why.contains("cannot be published with network none"),
        "{}",
        e[0]
    );
    let e = errors("a=service|Image|a:1|network|wifi");
    assert!(e[0].why.contains("bridge, host, none"), "{}", e[0]);
}

#[test]
fn mounts_in_volumes_or_host_folders() {
    let s = spec("db=service|Image|a:1|MountPath|/var/lib/mysql,/etc/mysql/");
    assert_eq!(
        s.config.mounts,
        vec![
            Mount {
                kind: MountKind::Volume,
                source: "db_etc_mysql".into(),
                target: "/etc/mysql".into(),
                read_only: false
            },
            Mount {
                kind: MountKind::Volume,
                source: "db_var_lib_mysql".into(),
                target: "/var/lib/mysql".into(),
                read_only: false
            },
        ]
    );
    let s = spec("db=service|Image|a:1|MountPath|/data|DataMount|host|DataMountPath|/srv/db|DataMountWrite|no");
    assert_eq!(
        s.config.mounts,
        vec![Mount {
            kind: MountKind::Bind,
            source: "/srv/db/data".into(),
            target: "/data".into(),
            read_only: true
        }]
    );
    let s = spec("db=service|Image|a:1|MountPath|/data|DataMount|host");
    assert_eq!(s.config.mounts[0].source, "/var/lib/berth/data/db/data");
    let e = errors("db=service|Image|a:1|MountPath|data");
    assert!(e[0].why.contains("not an absolute path"));
}

#[test]
fn limits_command_env_restart() {
    let s = spec("a=service|Image|a:1|MaxMemory|512|MaxCpu|1.5|Command|sh -c 'sleep 1'|Env|B=2,A=1|Restart|always");
    assert_eq!(s.config.memory, Some(512 << 20));
    assert_eq!(s.config.nano_cpus, Some(1_500_000_000));
    assert_eq!(
        s.config.command,
        Some(vec!["sh".into(), "-c".into(), "sleep 1".into()])
    );
    assert_eq!(s.config.env, vec!["A=1".to_string(), "B=2".to_string()]);
    assert_eq!(s.config.restart, "always");
}

#[test]
fn subdomain_alias_schedules_events() {
    let s = spec("wp=service|Image|a:1|SubDomain|enabled|WebAlias|blog|StartSchedule|0 7 * * *|StopSchedule|0 2 * * *|StartOn|post-backup|StopOn|pre-backup,shutdown");
    assert_eq!(s.subdomain.as_deref(), Some("wp"));
    assert_eq!(s.web_alias.as_deref(), Some("blog"));
    assert_eq!(s.start_schedule.as_deref(), Some("0 7 * * *"));
    assert_eq!(
        s.stop_on,
        vec!["pre-backup".to_string(), "shutdown".to_string()]
    );
    let s = spec("wp=service|Image|a:1|SubDomain|enabled|SubDomainName|blog");
    assert_eq!(s.subdomain.as_deref(), Some("blog"));
    assert_eq!(
        spec("wp=service|Image|a:1|SubDomain|disabled|SubDomainName|blog").subdomain,
        None
    );
    let e = errors("wp=service|Image|a:1|StopSchedule|0 26 * * *");
    assert_eq!(e[0].property.as_deref(), Some("StopSchedule"));
}

#[test]
fn status_disabled_is_kept_but_not_run() {
    assert!(!spec("a=service|Image|a:1|status|disabled").enabled);
    let e = errors("a=service|Image|a:1|status|enabeld");
    assert!(e[0].why.contains("enabled, disabled"));
}

#[test]
fn image_defaults_to_the_docker_images_record() {
    let d = declared_with_images("app=service\n", "app=image|Tag|berth/app:3|Source|git\n");
    assert_eq!(d.specs["app"].config.image, "berth/app:3");
    let d = declared_with_images("app=service\n", "");
    let e = &d.failed["app"][0];
    assert_eq!(e.property.as_deref(), Some("Image"));
    assert!(e.why.contains("no Image property"));
}

#[test]
fn every_error_of_a_record_is_reported_with_file_line_record_property_value() {
    let d = declared_with_images(
        "# comment\ngood=service|Image|a:1\nbad=service|Image|a:1|MaxMemory|12X|MaxCpu|lots|TCPPort|http\n",
        "",
    );
    assert!(d.specs.contains_key("good"));
    let e = &d.failed["bad"];
    assert_eq!(e.len(), 3, "{e:?}");
    assert_eq!(
        e[0].to_string(),
        "/db/docker_containers:3: record bad, property MaxMemory = \"12X\": \"12X\" has an unknown unit; expected a size like 512M or 1G (a bare number is MiB)"
    );
    assert!(e.iter().any(|e| e.property.as_deref() == Some("MaxCpu")));
    assert!(e.iter().any(|e| e.property.as_deref() == Some("TCPPort")));
}

#[test]
fn wrong_type_and_bad_key_fail_the_record() {
    let e = errors("app=servce|Image|a:1");
    assert!(e[0].why.contains("record type must be \"service\""));
    let e = errors("my app=service|Image|a:1");
    assert!(e[0].why.contains("not usable as a container name"));
}

#[test]
fn unknown_properties_warn_and_suggest() {
    let d = declared_with_images("a=service|Image|a:1|maxmemory|1G|Owner|bob\n", "");
    assert!(
        d.specs.contains_key("a"),
        "unknown properties are not errors"
    );
    assert_eq!(d.warnings.len(), 2);
    assert!(
        d.warnings[0].why.contains("did you mean MaxMemory?"),
        "{}",
        d.warnings[0]
    );
    assert!(!d.warnings[1].why.contains("did you mean"));
}

#[test]
fn volume_names_never_collide_and_the_common_ones_stay_as_they_were() {
    assert_eq!(volume_name("app", "/var/lib/mysql"), "app_var_lib_mysql");
    assert_eq!(volume_name("my-app.x", "/data/"), "my-app.x_data");
    // Both were `a_b_c`.
    assert_eq!(volume_name("a", "/b/c"), "a_b_c");
    assert_eq!(volume_name("a_b", "/c"), "a-5fb__c");
    assert_eq!(
        legacy_volume_name("a", "/b/c"),
        legacy_volume_name("a_b", "/c")
    );
    // Both were `app_root`; and `/b_c` was `/b/c`.
    assert_ne!(volume_name("app", "/"), volume_name("app", "/root"));
    assert_ne!(volume_name("app", "/b_c"), volume_name("app", "/b/c"));
}

proptest::proptest! {
    #[test]
    fn distinct_records_and_paths_get_distinct_volumes(
        a in "[a-z0-9][a-z0-9_.-]{0,6}", pa in "(/[a-z0-9_.-]{0,3}){1,3}",
        b in "[a-z0-9][a-z0-9_.-]{0,6}", pb in "(/[a-z0-9_.-]{0,3}){1,3}",
    ) {
        let key = |r: &str, p: &str| (r.to_string(), p.trim_matches('/').to_string());
        if key(&a, &pa) != key(&b, &pb) {
            proptest::prop_assert_ne!(volume_name(&a, &pa), volume_name(&b, &pb));
        }
        let name = volume_name(&a, &pa);
        proptest::prop_assert!(name.bytes().all(|c| c.is_ascii_alphanumeric() || b"_.-".contains(&c)));
    }
}

#[test]
fn keys_that_the_engine_would_refuse_or_recreate_would_clash_with_fail_here() {
    let e = errors("app =service|Image|a:1");
    assert!(e[0].why.contains("spaces around"), "{e:?}");
    let e = errors("web_berth-new=service|Image|a:1");
    assert!(e[0].why.contains("replacement"), "{e:?}");
    let e = errors("web_berth-old=service|Image|a:1");
    assert!(
        e[0].record == "web_berth-old" && e[0].why.contains("keeps for a rollback"),
        "{e:?}"
    );
}

#[test]
fn host_data_folders_may_not_nest() {
    // Inside one record: the outer mount's container owns the inner path.
    let e =
        errors("a=service|Image|a:1|DataMount|host|DataMountPath|/srv/a|MountPath|/data,/data/sub");
    assert!(e[0].why.contains("/data/sub lies inside /data"), "{e:?}");
    // With volumes nothing nests on the host.
    spec("a=service|Image|a:1|MountPath|/data,/data/sub");
    // Across records: the inner one fails, the outer one and a sharer apply.
    let d = declared_with_images(
        "outer=service|Image|a:1|DataMount|host|DataMountPath|/srv|MountPath|/data\n\
         inner=service|Image|a:1|DataMount|host|DataMountPath|/srv/data/x|MountPath|/y\n\
         sharer=service|Image|a:1|DataMount|host|DataMountPath|/srv|MountPath|/data|DataMountWrite|no\n",
        "",
    );
    assert!(d.specs.contains_key("outer") && d.specs.contains_key("sharer"));
    let why = &d.failed["inner"][0].why;
    assert!(why.contains("/srv/data/x/y lies inside /srv/data"), "{why}");
    // An invalid record's folders still count: its container has them.
    let d = declared_with_images(
        "outer=service|Image|a:1|DataMount|host|DataMountPath|/srv|MountPath|/data|MaxMemory|lots\n\
         inner=service|Image|a:1|DataMount|host|DataMountPath|/srv/data/x|MountPath|/y\n",
        "",
    );
    assert!(d.failed.contains_key("inner"), "{:?}", d.specs.keys());
}

#[test]
fn errors_and_warnings_never_quote_a_value_that_may_be_a_secret() {
    let d = declared_with_images(
        "app=service|Image|a:1|Env|DB_PASSWORD=hunter2,TOKEN:s3cret|Command|sh -c 'unclosed p4ss\n\
         web=service|Image|a:1|ENV|API_KEY=t0psecret\n",
        "",
    );
    let said: Vec<String> = d
        .errors()
        .chain(d.warnings.iter())
        .map(|e| e.to_string())
        .collect();
    assert_eq!(said.len(), 3, "{said:?}");
    for secret in ["hunter2", "s3cret", "p4ss", "t0psecret"] {
        assert!(said.iter().all(|s| !s.contains(secret)), "{said:?}");
    }
    assert!(
        said.iter()
            .any(|s| s.contains("property Env") && s.contains("item 2")),
        "{said:?}"
    );
    assert!(
        said.iter().any(|s| s.contains("did you mean Env")),
        "{said:?}"
    );
}

/// A record without health properties hashes exactly as before they
/// existed: a changed hash would recreate every container on upgrade.
#[test]
fn the_spec_hash_of_a_record_without_health_properties_is_pinned() {
    let s = spec("app=service|Image|berth/app:1|TCPPort|80|Env|A=1|Command|sleep 60|MaxMemory|64M|MountPath|/data");
    assert_eq!(s.spec_hash, "b94bbaa7ed6023875a910f67cc0c70b0");
}

#[test]
fn health_properties_make_the_health_check() {
    use crate::model::{HealthCheck, HealthTest};
    assert_eq!(spec("a=service|Image|a:1").config.health, None);
    let s = spec("a=service|Image|a:1|HealthCmd|pg_isready -U app|HealthInterval|1m30s|HealthTimeout|5|HealthStartPeriod|2m|HealthRetries|5");
    assert_eq!(
        s.config.health,
        Some(HealthCheck {
            test: HealthTest::Shell("pg_isready -U app".into()),
            interval_seconds: Some(90),
            timeout_seconds: Some(5),
            start_period_seconds: Some(120),
            retries: Some(5),
        })
    );
    let s = spec("a=service|Image|a:1|HealthCmd|NONE");
    assert_eq!(s.config.health.map(|h| h.test), Some(HealthTest::Disabled));
    // Timings alone tune the image's own check.
    let s = spec("a=service|Image|a:1|HealthInterval|1s");
    let h = s.config.health.expect("a check");
    assert_eq!((h.test, h.interval_seconds), (HealthTest::Image, Some(1)));
    // A change of any of them changes the hash: a recreate.
    assert_ne!(
        spec("a=service|Image|a:1|HealthRetries|3").spec_hash,
        spec("a=service|Image|a:1|HealthRetries|4").spec_hash
    );
}

#[test]
fn bad_health_values_name_record_and_property_and_never_the_command() {
    let e = errors("web=service|Image|a:1|HealthInterval|2 hours|HealthRetries|0|HealthTimeout|2h");
    let text: Vec<String> = e.iter().map(ToString::to_string).collect();
    assert_eq!(e.len(), 3, "{text:?}");
    assert!(
        text[0].contains("record web, property HealthInterval = \"2 hours\"")
            && text[0].contains("not a duration"),
        "{}",
        text[0]
    );
    assert!(text[1].contains("property HealthTimeout") && text[1].contains("1 s to 3600 s"));
    assert!(text[2].contains("property HealthRetries") && text[2].contains("1 to 100"));
    let e = errors("web=service|Image|a:1|HealthCmd|none|HealthRetries|3");
    assert!(e[0].why.contains("HealthCmd none"), "{}", e[0]);
    // A misspelt HealthCmd may hold a password: warned about without it.
    let d = declared_with_images("web=service|Image|a:1|Healthcmd|mysqladmin -phunter2\n", "");
    let warning = d.warnings[0].to_string();
    assert!(warning.contains("did you mean HealthCmd"), "{warning}");
    assert!(!warning.contains("hunter2"), "{warning}");
}

#[test]
fn pull_defaults_to_never_for_an_image_berth_builds_and_missing_otherwise() {
    let d = declared_with_images(
        "built=service|Image|berth/app\nother=service|Image|nginx:1\nsame=service\n",
        "same=image|Source|git|Tag|berth/same:2\nx=image|Source|git|Tag|berth/app:latest\n",
    );
    assert!(d.failed.is_empty(), "{:?}", d.failed);
    assert_eq!(
        d.specs["built"].pull,
        PullPolicy::Never,
        "Tag berth/app:latest"
    );
    assert_eq!(d.specs["other"].pull, PullPolicy::Missing);
    assert_eq!(d.specs["same"].pull, PullPolicy::Never);
    assert_eq!(d.specs["other"].credentials, None);
    let s = spec("app=service|Image|reg.example/app:1|Pull|Always|Credentials|reg");
    assert_eq!(s.pull, PullPolicy::Always);
    assert_eq!(s.credentials.as_deref(), Some("reg"));
    // Set explicitly, it wins over the default.
    let d = declared_with_images(
        "built=service|Image|berth/app:1|Pull|missing\n",
        "x=image|Source|git|Tag|berth/app:1\n",
    );
    assert_eq!(d.specs["built"].pull, PullPolicy::Missing);
}

#[test]
fn pull_and_credentials_are_validated_and_not_part_of_the_spec_hash() {
    let e = errors("app=service|Image|a:1|Pull|sometimes");
    assert_eq!(e[0].property.as_deref(), Some("Pull"));
    assert!(e[0].why.contains("missing, always, never"), "{}", e[0].why);
    let e = errors("app=service|Image|a:1|Credentials|no good");
    assert_eq!(e[0].property.as_deref(), Some("Credentials"));
    // How the image is fetched is not what runs: no recreate for it.
    assert_eq!(
        spec("app=service|Image|a:1").spec_hash,
        spec("app=service|Image|a:1|Pull|always|Credentials|reg").spec_hash
    );
}
