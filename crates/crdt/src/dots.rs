//! The observed-remove join of dot sets, shared by the OR-Set and OR-Map.

use concord_clocks::{CausalContext, Dot};
use std::collections::BTreeSet;

/// The dots that survive joining `(mine, my context)` with `(theirs, their
/// context)`: those both sides hold, and those one side holds that the
/// other has not seen (had it seen them and not kept them, it removed them).
pub(crate) fn join(
    mine: &BTreeSet<Dot>,
    my_ctx: &CausalContext,
    theirs: &BTreeSet<Dot>,
    their_ctx: &CausalContext,
) -> BTreeSet<Dot> {
    let keep_mine = mine
        .iter()
        .filter(|d| theirs.contains(d) || !their_ctx.contains(**d));
    let keep_theirs = theirs.iter().filter(|d| !my_ctx.contains(**d));
    keep_mine.chain(keep_theirs).copied().collect()
}
