// Fuzzes the one frame decoder every peer's bytes go through (admin clients,
// agents, RPC service sessions), under each side's rules, fed in two pieces to
// exercise partial frames, and every message parser on the frames it yields.

#include <cstddef>
#include <cstdint>
#include <string>

#include "wire/admin_protocol.h"
#include "wire/agent_protocol.h"
#include "wire/frame.h"

namespace {

void Decode(tessera::wire::DecoderRules rules, std::string_view input) {
  using namespace tessera::wire;
  FrameDecoder decoder(rules);
  size_t half = input.size() / 2;
  decoder.Feed(input.data(), half);
  for (int round = 0; round < 2; ++round) {
    for (;;) {
      auto next = decoder.Next();
      if (!next || !*next) break;
      const Frame& f = **next;
      // The decoder's promises: the type is allowed and the size within its rule.
      if (!rules.Allows(f.type)) __builtin_trap();
      if (f.type == FrameType::kData && (f.payload.empty() || f.payload.size() > kMaxDataPayload)) {
        __builtin_trap();
      }
      switch (f.type) {
        case FrameType::kOpen:
          if (auto open = ParseOpen(f.payload, 0)) {
            // Whatever parses must survive a serialise/parse round trip.
            auto again = ParseOpen(SerializeOpen(*open), 0);
            if (!again || again->argv != open->argv || again->cwd != open->cwd ||
                again->tty != open->tty || again->detach != open->detach ||
                again->service != open->service) {
              __builtin_trap();
            }
          }
          break;
        case FrameType::kRequest:
          (void)ParseAdminRequest(f.payload);
          break;
        case FrameType::kResponse:
          (void)ParseAdminReply(f.payload);
          break;
        case FrameType::kError:
          (void)ParseSessionError(f.payload);
          break;
        case FrameType::kHello:
          (void)ParseHello(f.payload);
          break;
        case FrameType::kCall:
          if (auto call = ParseCall(f.payload)) {
            auto again = ParseCall(SerializeCall(*call));
            if (!again || *again != *call) __builtin_trap();
          }
          break;
        case FrameType::kResize:
          (void)DecodeWindowSize(f.payload);
          break;
        default:
          (void)DecodeU32(f);
      }
    }
    if (round == 0) decoder.Feed(input.data() + half, input.size() - half);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace tessera::wire;
  std::string_view input(reinterpret_cast<const char*>(data), size);
  Decode(DecoderRules::AdminServer(), input);
  Decode(DecoderRules::AdminClient(), input);
  Decode(DecoderRules::AgentSide(), input);
  Decode(DecoderRules::HostSide(), input);
  Decode(DecoderRules::CallServer(), input);
  Decode(DecoderRules::CallClient(), input);
  // The JSON parsers on raw bytes too (peers control payloads entirely).
  (void)ParseAdminRequest(input);
  (void)ParseOpen(input, size % 4);
  (void)ParseSessionError(input);
  (void)ParseCall(input);
  return 0;
}
