#pragma once
// After a fork-like clone, every page the parent had written is
// write-protected (copy-on-write) and stays so after the child has exec'd:
// the parent's next write to each one traps once. In a paravirtualised
// guest a trap costs about 20 µs, and the daemon's event loop writes a few
// hundred pages (an nftables transaction alone: ~300) in the moments after
// it starts a cell, so a qube's network set-up took ~10 ms instead of ~2.
// RearmHeapAfterClone makes the heap and the main thread's stack writable
// again in one madvise(MADV_POPULATE_WRITE) each: the kernel walks the
// pages without a trap per page (~1 ms for 6 MB). Call it once the child
// has exec'd (or died): while it shares the pages, this would copy them.
//
//   clone3(...);  ...  AwaitAgentExec(...);
//   RearmHeapAfterClone();   // best effort; what failed is returned

#include "common/error.h"

namespace tessera {

// Best effort: a kernel without MADV_POPULATE_WRITE (before 5.14) leaves
// the pages to fault one by one, as before.
Status RearmHeapAfterClone();

}  // namespace tessera
