use super::*;

#[test]
fn params_are_refused_beyond_the_limit_and_only_there() {
    let at_limit = "x".repeat(MAX_PARAMS_BYTES);
    assert_eq!(Params::new(at_limit.clone()).unwrap().as_str(), at_limit);
    let e = Params::new("x".repeat(MAX_PARAMS_BYTES + 1)).unwrap_err();
    assert_eq!(e.code, Code::PayloadTooLarge);
    assert!(
        e.message.contains(&MAX_PARAMS_BYTES.to_string()),
        "{}",
        e.message
    );
    // The same check for every form an entry point has.
    let big = Value::String("x".repeat(MAX_PARAMS_BYTES));
    assert_eq!(
        Params::from_value(&big).unwrap_err().code,
        Code::PayloadTooLarge
    );
    let map = Map::from_iter([("summary".to_owned(), big)]);
    assert_eq!(
        Params::from_map(map).unwrap_err().code,
        Code::PayloadTooLarge
    );
    assert_eq!(Params::from_map(Map::new()).unwrap().as_str(), "{}");
}

#[test]
fn request_ids_are_fresh_and_shaped() {
    let (a, b) = (new_request_id(), new_request_id());
    assert_ne!(a, b);
    for id in [&a, &b] {
        assert!(id.starts_with("req_") && id.len() == 20, "{id}");
        assert!(id[4..].chars().all(|c| c.is_ascii_hexdigit()), "{id}");
    }
    let many: std::collections::HashSet<String> = (0..10_000).map(|_| new_request_id()).collect();
    assert_eq!(many.len(), 10_000, "request ids repeated within a process");
    let meta = Meta::with_id("req_given".into());
    assert_eq!(meta.request_id, "req_given");
    assert!(!meta.quiet && meta.now.is_none());
    assert!(Meta::quiet().quiet);
}
