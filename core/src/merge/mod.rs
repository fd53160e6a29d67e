//! Merging what many leaves answered into one result: the top-k k-way merge
//! of scored hits ([`top_k`], a loser tree), posting-list intersection and
//! union ([`intersect`], [`union`]), merging of counts and facet aggregates
//! ([`sum_counts`], [`merge_count_maps`], [`merge_sorted_counts`],
//! [`top_counts`]), and rayon-parallel variants of the first two
//! ([`top_k_par`], [`intersect_par`], [`union_par`]) that return exactly what
//! the sequential versions return.
//!
//! Every function here takes sorted input and checks that it is sorted:
//! unsorted input is an [`InvalidArgument`](crate::ErrorKind::InvalidArgument)
//! error naming the list and the position, never a wrong answer. The one
//! documented exception is [`top_k_trusted`], which inspects only the prefix
//! it consumes.

mod aggregate;
mod loser;
mod parallel;
mod postings;
mod topk;

pub use aggregate::{merge_count_maps, merge_sorted_counts, sum_counts, top_counts};
pub use parallel::{intersect_par, top_k_par, union_par, PAR_THRESHOLD};
pub use postings::{intersect, union, DocId};
pub use topk::{top_k, top_k_trusted, Hit};
