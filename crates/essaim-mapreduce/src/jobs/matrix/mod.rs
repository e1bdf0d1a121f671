//! Linear algebra over a sparse matrix too large for one machine, and a vector that
//! may be too: the distributed exercise of the course's MapReduce chapter.
//!
//! | job | what it computes | steps | output line |
//! |---|---|---|---|
//! | [`matvec`] | `y = A·v` | 2 | `i<TAB>y_i` |
//! | [`rownorms`] | the Euclidean norm of every row, `‖A_i‖` | 1 | `i<TAB>‖A_i‖` |
//! | [`cosine`] | the cosine similarity of `v` and every row, `A_i·v / (‖A_i‖ ‖v‖)` | 2 | `i<TAB>cos_i` |
//!
//! All three read the coordinate format of [`entries`] (`i j a_ij`, `j v_j`), and none
//! holds the vector, a column or a row whole in one task: a vector is joined to the
//! matrix column by column, as `matvec` does, and a row is summed value by value. Their
//! sums are exact and rounded once (`exact_sum.rs`), so a result does not depend on the
//! splits, the number of reducers or the order values arrive in.
//!
//! Why three jobs rather than one with a mode: each has its own inputs (norms need no
//! vector), its own steps and its own output, and a job's name says what its output
//! holds, as `essaim run matvec` does. The norms `cosine` needs are computed inside it,
//! in the same pass as the dot products; `rownorms` is that half alone.
//!
//! [`generate`] writes a random matrix and vector in this format (`essaim gen matrix`).

pub mod cosine;
pub mod entries;
mod exact_sum;
pub mod generate;
pub mod matvec;
pub mod rownorms;
