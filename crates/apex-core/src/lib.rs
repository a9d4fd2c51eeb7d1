//! # apex-core
//!
//! APEX (Advantageous Parameter EXpansion) written once against a small
//! [`Backend`] trait: the Monarch map, the MixColumn / MixRow / S2 expansion
//! operators with their gradients and exact fusion, and (in later modules)
//! scoring, selection and planning.
//!
//! Backends (`apex-cpu`, …) implement the primitives in [`backend`]; everything
//! else here is derived from them.
//!
//! Around the operators: [`recorder`] scores units from their activations
//! (spec §2), [`selection`] picks A, D and the tuned-only units per layer
//! (§3), [`permute`] lays them out as [D | A | tuned-only | rest] by
//! co-permuting the weights, and [`plan`] counts what APEX trains (§6.5), all
//! driven by [`settings::ApexSettings`].

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
pub mod permute;
pub mod plan;
pub mod recorder;
pub mod s2;
pub mod selection;
pub mod settings;
pub mod split_linear;
pub mod transformer_checks;
pub mod transformer_ops;

pub use backend::{Backend, BinaryOp, ScaledColumns, UnaryOp};
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
pub use settings::ApexSettings;
pub use split_linear::{SplitAxis, SplitLinear};
pub use transformer_ops::{AdamWStep, TransformerOps, IGNORE_INDEX};
