//! What the REST API tests (`api.rs`, `api_errors.rs`, `api_random.rs`) share, kept out of
//! `common` so that the other targets do not build it: the route table and the stub console.
#![allow(dead_code)]

pub mod routes;
pub mod stub;
