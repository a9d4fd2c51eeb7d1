//! # apex-conformance
//!
//! Holds every backend to the same answers:
//! * [`case`]: an APEX operator with host inputs, runnable on any [`apex_core::Backend`];
//! * [`vector_file`]: golden vectors (spec §0.1) read from `.safetensors` files;
//! * [`compare`]: the tolerance policy;
//! * [`runner`]: runs a directory of vectors on a backend and reports per file and tensor;
//! * [`primitives`]: every Backend primitive and the Monarch override on random strided
//!   views, against the CPU reference;
//! * [`transformer`]: every `TransformerOps` op against the CPU reference;
//! * [`trajectory`]: the same short training run on two backends, loss by loss.
//!
//! `cargo xtask conformance --vectors DIR --backend cpu` is a thin CLI over [`runner`].

pub mod backends;
pub mod case;
pub mod compare;
pub mod primitives;
pub mod random_case;
pub mod runner;
pub mod trajectory;
pub mod transformer;
pub mod vector_file;

pub use case::{run_case, Case, HostTensor, Op, Outputs};
pub use compare::{compare, TensorReport};
pub use random_case::{differentiable_inputs, random_case, Sizes};
pub use runner::{run_directory, run_file, FileReport};
pub use vector_file::{parse_vector, read_vector, VectorFile};
