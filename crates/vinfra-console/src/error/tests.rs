//! Unit tests of the console's errors.

use super::*;

#[test]
fn messages_do_not_repeat_their_source() {
    let e = Error::BadName {
        field: "host",
        source: NameError::Empty,
    };
    assert_eq!(vinfra_types::error::chain(&e), "host: name is empty");
    let users = Error::NetworkInUse {
        network: "blue".into(),
        users: vec!["a".into()],
        more: 0,
    };
    assert_eq!(
        users.to_string(),
        "network 'blue' is in use by VM a; delete them first"
    );
    let many = Error::NetworkInUse {
        network: "blue".into(),
        users: vec!["a".into(), "b".into()],
        more: 3,
    };
    assert_eq!(
        many.to_string(),
        "network 'blue' is in use by VMs a, b and 3 more; delete them first"
    );
}
