#pragma once
// What a qube may put on the caller's terminal when it has no terminal of its
// own: printable text, newline and tab. Every other control byte (ESC and so
// every escape sequence: OSC 52 clipboard writes, titles, screen clears,
// cursor moves; CR, backspace, BEL, C1 controls) and every byte that is not
// well-formed UTF-8 becomes '_', as Qubes' qvm-run does by default. Streaming:
// a UTF-8 sequence cut between two chunks is held back until it completes.
//
//   TerminalFilter filter;
//   write(1, filter.Filter(chunk));   // for each chunk
//   write(1, filter.Finish());        // at the end of the stream

#include <string>
#include <string_view>

namespace tessera {

class TerminalFilter {
 public:
  std::string Filter(std::string_view chunk);
  // The held-back bytes of an unfinished sequence, replaced.
  std::string Finish();

 private:
  std::string pending_;  // the start of a UTF-8 sequence, at most 3 bytes
};

}  // namespace tessera
