//! Test support shared by the integration tests: the real control plane and a namespace per
//! test. Test doubles for what cannot run here live beside this file, never in the operator.
#![allow(dead_code, unused_imports)]

pub mod namespace;
pub mod testbed;

pub use namespace::TestNamespace;
pub use testbed::{Testbed, testbed};
pub mod doubles;
pub mod kubevirt;
pub mod operator;
