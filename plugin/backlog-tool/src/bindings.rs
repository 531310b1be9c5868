//! The WIT bindings of the `backlog-tool` world (generated).

wit_bindgen::generate!({
    path: "../../wit",
    world: "backlog-bridge:backlog/backlog-tool@0.2.0",
    generate_all,
});
