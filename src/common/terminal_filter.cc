#include "common/terminal_filter.h"

#include <cstdint>

namespace tessera {
namespace {

// Length of the UTF-8 sequence a lead byte starts (0: not a lead byte).
size_t SequenceLength(uint8_t lead) {
  if (lead >= 0xc2 && lead <= 0xdf) return 2;
  if (lead >= 0xe0 && lead <= 0xef) return 3;
  if (lead >= 0xf0 && lead <= 0xf4) return 4;
  return 0;
}

// The code point of a complete sequence, or -1 when it is malformed
// (a bad continuation byte, overlong, a surrogate, beyond U+10FFFF).
int32_t Decode(std::string_view seq) {
  auto b = [&](size_t i) { return static_cast<uint8_t>(seq[i]); };
  int32_t cp = 0;
  switch (seq.size()) {
    case 2:
      cp = b(0) & 0x1f;
      break;
    case 3:
      cp = b(0) & 0x0f;
      break;
    case 4:
      cp = b(0) & 0x07;
      break;
    default:
      return -1;
  }
  for (size_t i = 1; i < seq.size(); ++i) {
    if ((b(i) & 0xc0) != 0x80) return -1;
    cp = (cp << 6) | (b(i) & 0x3f);
  }
  static constexpr int32_t kMin[] = {0, 0, 0x80, 0x800, 0x10000};
  if (cp < kMin[seq.size()] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return -1;
  return cp;
}

bool Printable(int32_t cp) {
  if (cp >= 0x80 && cp <= 0x9f) return false;  // C1 controls (CSI, OSC, ... as one byte)
  // Bidirectional overrides and isolates reorder what follows them on screen.
  if ((cp >= 0x202a && cp <= 0x202e) || (cp >= 0x2066 && cp <= 0x2069)) return false;
  return true;
}

}  // namespace

std::string TerminalFilter::Filter(std::string_view chunk) {
  std::string joined;
  std::string_view in = chunk;
  if (!pending_.empty()) {
    joined = std::move(pending_) + std::string(chunk);
    pending_.clear();
    in = joined;
  }
  std::string out;
  out.reserve(in.size());
  size_t i = 0;
  while (i < in.size()) {
    auto c = static_cast<uint8_t>(in[i]);
    if (c < 0x80) {
      out.push_back((c >= 0x20 && c < 0x7f) || c == '\n' || c == '\t' ? static_cast<char>(c) : '_');
      ++i;
      continue;
    }
    size_t len = SequenceLength(c);
    if (len != 0 && i + len > in.size()) {
      // Cut by the chunk's end: held back if what there is may continue.
      bool may_continue = true;
      for (size_t k = i + 1; k < in.size(); ++k) {
        may_continue = may_continue && (static_cast<uint8_t>(in[k]) & 0xc0) == 0x80;
      }
      if (may_continue) {
        pending_.assign(in.substr(i));
        break;
      }
      len = 0;
    }
    int32_t cp = len == 0 ? -1 : Decode(in.substr(i, len));
    if (cp >= 0 && Printable(cp)) {
      out.append(in.substr(i, len));
      i += len;
    } else {
      out.push_back('_');  // the lead byte; what follows is judged on its own
      ++i;
    }
  }
  return out;
}

std::string TerminalFilter::Finish() {
  std::string out(pending_.size(), '_');
  pending_.clear();
  return out;
}

}  // namespace tessera
