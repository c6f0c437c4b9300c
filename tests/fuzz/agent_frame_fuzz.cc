// Fuzzes everything that parses bytes from the agent control channel: the
// frame decoder, exec requests (agent side) and replies (host side).

#include <cstddef>
#include <cstdint>
#include <string>

#include "agent/protocol.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace tessera::agent;
  std::string_view input(reinterpret_cast<const char*>(data), size);
  (void)ParseExec(input);
  (void)ParseReply(input);
  FrameReader reader;
  // Feed in two pieces to exercise partial frames.
  size_t half = size / 2;
  reader.Feed(input.data(), half);
  for (int round = 0; round < 2; ++round) {
    for (;;) {
      auto next = reader.Next();
      if (!next || !*next) break;
      if (auto exec = ParseExec(**next); exec) {
        // Whatever parses must survive a serialise/parse round trip.
        auto again = ParseExec(SerializeExec(*exec));
        if (!again || again->argv != exec->argv) __builtin_trap();
      }
      (void)ParseReply(**next);
    }
    if (round == 0) reader.Feed(input.data() + half, size - half);
  }
  return 0;
}
