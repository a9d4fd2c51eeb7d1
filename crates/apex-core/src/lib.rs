//! # apex-core
//!
//! APEX (Advantageous Parameter EXpansion) written once against a small
//! [`Backend`] trait: the Monarch map, the MixColumn / MixRow / S2 expansion
//! operators with their gradients and exact fusion, and (in later modules)
//! scoring, selection and planning.
//!
//! Backends (`apex-cpu`, …) implement the primitives in [`backend`]; everything
//! else here is derived from them.

pub mod backend;
pub mod element;
pub mod error;
pub mod layout;
pub mod model_config;
pub mod ops;
pub mod transformer_ops;

pub use backend::{Backend, BinaryOp, UnaryOp};
pub use element::Element;
pub use error::{ApexError, Result};
pub use layout::{BatchView, MatView};
pub use model_config::ModelConfig;
pub use transformer_ops::{AdamWStep, TransformerOps, IGNORE_INDEX};
