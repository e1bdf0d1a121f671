//! Linear algebra over a sparse matrix too large for one machine, and a vector that
//! may be too: the distributed exercise of the course's MapReduce chapter.
//!
//! | job | what it computes | steps | output line |
//! |---|---|---|---|
//! | [`matvec`] | `y = A·v` | 2 | `i<TAB>y_i` |
//! | [`rownorms`] | the Euclidean norm of every row, `‖A_i‖` | 1 | `i<TAB>‖A_i‖` |
//!
//! The jobs read the coordinate format of [`entries`] (`i j a_ij`, `j v_j`), and none
//! holds the vector, a column or a row whole in one task. Their sums are exact and
//! rounded once (`exact_sum.rs`), so a result does not depend on the splits, the number
//! of reducers or the order values arrive in.

pub mod entries;
mod exact_sum;
pub mod matvec;
pub mod rownorms;
