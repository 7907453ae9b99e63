//! Pulls from a real registry (tests/support/registry.rs) through the real
//! engine: images made locally, pushed, then removed locally so berth must
//! pull them.

mod support;

use support::registry::Registry;
use support::{Prefix, TestImages};

#[test]
fn the_test_registry_serves_what_is_pushed_to_it_over_tls_with_auth() {
    let prefix = Prefix::new();
    let registry = Registry::start_tls(Some(("berth", "s3cret-pw")));
    assert!(registry.ca_path().is_some_and(|p| p.exists()));
    let name = format!("{}/app", prefix.as_str());
    assert_eq!(registry.manifest_digest(&name, "1"), None);
    let reference = registry.push(&prefix, &TestImages::busybox().id, &format!("{name}:1"));
    assert_eq!(reference, format!("127.0.0.1:{}/{name}:1", registry.port));
    let digest = registry.manifest_digest(&name, "1");
    assert!(
        digest.as_deref().is_some_and(|d| d.starts_with("sha256:")),
        "{digest:?}\n{}",
        registry.log()
    );
    assert!(registry.catalog().contains(&name), "{}", registry.catalog());
    // Without the login the registry refuses the push.
    let other = registry.reference(&format!("{name}:2"));
    prefix.tag(&TestImages::busybox().id, &other);
    assert!(registry.push_reference(&other, None).is_err());
    assert_eq!(registry.manifest_digest(&name, "2"), None);
}

#[test]
fn the_plain_test_registry_takes_pushes_without_a_login() {
    let prefix = Prefix::new();
    let registry = Registry::start();
    assert!(registry.ca_path().is_none());
    let name = format!("{}/plain", prefix.as_str());
    registry.push(&prefix, &TestImages::busybox().id, &format!("{name}:1"));
    assert!(registry.manifest_digest(&name, "1").is_some());
}
