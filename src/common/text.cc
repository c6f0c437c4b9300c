#include "common/text.h"

#include <algorithm>
#include <cstdint>

namespace tessera {
namespace {

char LowerAscii(char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; }

std::string Lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(), LowerAscii);
  return out;
}

constexpr size_t kMaxMatchedWord = 64;

template <class Candidates>
std::optional<std::string> Closest(std::string_view word, const Candidates& candidates,
                                   size_t max_distance) {
  if (word.size() > kMaxMatchedWord) return std::nullopt;
  std::string lower_word = Lower(word);
  std::optional<std::string> best;
  size_t best_distance = 0;
  for (const auto& candidate : candidates) {
    size_t distance = EditDistance(lower_word, Lower(candidate));
    if (distance <= max_distance && (!best || distance < best_distance)) {
      best = std::string(candidate);
      best_distance = distance;
    }
  }
  return best;
}

void AppendHexEscape(std::string& out, unsigned char byte) {
  static constexpr char kHex[] = "0123456789abcdef";
  out += "\\x";
  out += kHex[byte >> 4];
  out += kHex[byte & 0xf];
}

// Length of the valid UTF-8 sequence at the start of `s` (1..4), or 0 if it
// does not start with one (stray continuation byte, truncated or overlong
// sequence, surrogate, above U+10FFFF).
size_t Utf8SequenceLength(std::string_view s) {
  auto byte = [&](size_t i) { return static_cast<unsigned char>(s[i]); };
  unsigned char lead = byte(0);
  size_t length;
  uint32_t code_point;
  uint32_t min;
  if (lead < 0x80) return 1;
  if (lead >= 0xc2 && lead <= 0xdf) {
    length = 2, code_point = lead & 0x1fu, min = 0x80;
  } else if (lead >= 0xe0 && lead <= 0xef) {
    length = 3, code_point = lead & 0x0fu, min = 0x800;
  } else if (lead >= 0xf0 && lead <= 0xf4) {
    length = 4, code_point = lead & 0x07u, min = 0x10000;
  } else {
    return 0;  // continuation byte, C0/C1 (overlong two-byte) or F5..FF
  }
  if (s.size() < length) return 0;
  for (size_t i = 1; i < length; ++i) {
    if ((byte(i) & 0xc0u) != 0x80u) return 0;
    code_point = (code_point << 6) | (byte(i) & 0x3fu);
  }
  if (code_point < min || code_point > 0x10ffff) return 0;
  if (code_point >= 0xd800 && code_point <= 0xdfff) return 0;
  return length;
}

}  // namespace

size_t EditDistance(std::string_view a, std::string_view b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diagonal = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t above = row[j];
      size_t substitute = diagonal + (a[i - 1] == b[j - 1] ? 0 : 1);
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, substitute});
      diagonal = above;
    }
  }
  return row[b.size()];
}

std::optional<std::string> ClosestMatch(std::string_view word,
                                        const std::vector<std::string>& candidates,
                                        size_t max_distance) {
  return Closest(word, candidates, max_distance);
}

std::optional<std::string> ClosestMatch(std::string_view word,
                                        std::span<const std::string_view> candidates,
                                        size_t max_distance) {
  return Closest(word, candidates, max_distance);
}

std::string EscapeControl(std::string_view text, EscapeNewlines keep) {
  std::string out;
  out.reserve(text.size());
  size_t i = 0;
  while (i < text.size()) {
    auto c = static_cast<unsigned char>(text[i]);
    if (c < 0x20 || c == 0x7f) {
      bool kept = keep == EscapeNewlines::kKeep && (c == '\n' || c == '\t');
      if (kept) {
        out += static_cast<char>(c);
      } else {
        AppendHexEscape(out, c);
      }
      ++i;
      continue;
    }
    size_t length = Utf8SequenceLength(text.substr(i));
    // C2 80..C2 9F encode the C1 controls.
    bool c1 = length == 2 && c == 0xc2 && static_cast<unsigned char>(text[i + 1]) <= 0x9f;
    if (length == 0 || c1) {
      size_t bytes = c1 ? 2 : 1;
      for (size_t k = 0; k < bytes; ++k) AppendHexEscape(out, static_cast<unsigned char>(text[i + k]));
      i += bytes;
      continue;
    }
    out.append(text.substr(i, length));
    i += length;
  }
  return out;
}

std::optional<uint64_t> ParseSizeMib(std::string_view text) {
  size_t digits = 0;
  while (digits < text.size() && text[digits] >= '0' && text[digits] <= '9') ++digits;
  if (digits == 0 || digits > 15) return std::nullopt;  // 10^15 MiB: beyond any disk
  uint64_t number = 0;
  for (size_t i = 0; i < digits; ++i) number = number * 10 + static_cast<uint64_t>(text[i] - '0');
  std::string unit;
  for (char c : text.substr(digits)) unit += static_cast<char>(c >= 'a' && c <= 'z' ? c - 32 : c);
  uint64_t factor = 0;
  if (unit.empty() || unit == "M" || unit == "MIB") {
    factor = 1;
  } else if (unit == "G" || unit == "GIB") {
    factor = 1024;
  } else if (unit == "T" || unit == "TIB") {
    factor = 1024 * 1024;
  } else {
    return std::nullopt;
  }
  if (number > UINT64_MAX / factor / (1u << 20)) return std::nullopt;
  return number * factor;
}

std::string FormatBytes(uint64_t bytes) {
  static constexpr const char* kUnits[] = {"TiB", "GiB", "MiB", "KiB"};
  static constexpr int kShifts[] = {40, 30, 20, 10};
  for (size_t i = 0; i < 4; ++i) {
    uint64_t unit = uint64_t{1} << kShifts[i];
    if (bytes >= unit && bytes % unit == 0) return std::to_string(bytes / unit) + " " + kUnits[i];
  }
  return std::to_string(bytes) + (bytes == 1 ? " byte" : " bytes");
}

std::vector<std::string_view> SplitLines(std::string_view text) {
  std::vector<std::string_view> lines;
  while (!text.empty()) {
    size_t end = text.find('\n');
    lines.push_back(text.substr(0, end));
    if (end == std::string_view::npos) break;
    text.remove_prefix(end + 1);
  }
  return lines;
}

}  // namespace tessera
