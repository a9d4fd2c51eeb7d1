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
pub mod divisor;
pub mod element;
pub mod error;
pub mod layout;
pub mod mix_column;
pub mod mix_row;
pub mod mixer;
pub mod model_config;
pub mod monarch;
pub mod ops;
pub mod s2;
pub mod split_linear;
pub mod transformer_ops;

pub use backend::{Backend, BinaryOp, UnaryOp};
pub use divisor::find_divisor;
pub use element::Element;
pub use error::{ApexError, Result};
pub use layout::{BatchView, MatView};
pub use mix_column::{MixColumn, MixColumnCache, MixColumnGrads};
pub use mix_row::{MixRow, MixRowCache};
pub use mixer::{Mixer, MixerGrads};
pub use model_config::ModelConfig;
pub use monarch::{Monarch, MonarchGrads, MonarchInit};
pub use s2::S2Linear;
pub use split_linear::{SplitAxis, SplitLinear};
pub use transformer_ops::{AdamWStep, TransformerOps, IGNORE_INDEX};
