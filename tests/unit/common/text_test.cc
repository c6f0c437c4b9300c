#include "common/text.h"

#include <gtest/gtest.h>

#include <array>
#include <string>
#include <string_view>
#include <vector>

namespace tessera {
namespace {

TEST(SizeTest, ParseSizeMibTakesBinaryUnitsAndBareMiB) {
  EXPECT_EQ(ParseSizeMib("2048"), 2048u);
  EXPECT_EQ(ParseSizeMib("2g"), 2048u);
  EXPECT_EQ(ParseSizeMib("2GiB"), 2048u);
  EXPECT_EQ(ParseSizeMib("7M"), 7u);
  EXPECT_EQ(ParseSizeMib("1T"), 1048576u);
  for (const char* bad : {"", "G", "1.5G", "2 G", "2GB", "-1", "1e3", "9999999999999999"}) {
    EXPECT_EQ(ParseSizeMib(bad), std::nullopt) << bad;
  }
}

TEST(SizeTest, FormatBytesUsesTheLargestExactUnit) {
  EXPECT_EQ(FormatBytes(2ull << 30), "2 GiB");
  EXPECT_EQ(FormatBytes(1536ull << 20), "1536 MiB");
  EXPECT_EQ(FormatBytes(4096), "4 KiB");
  EXPECT_EQ(FormatBytes(1ull << 40), "1 TiB");
  EXPECT_EQ(FormatBytes(100), "100 bytes");
  EXPECT_EQ(FormatBytes(1), "1 byte");
}

TEST(EditDistanceTest, Levenshtein) {
  EXPECT_EQ(EditDistance("kitten", "sitting"), 3u);
  EXPECT_EQ(EditDistance("", "abc"), 3u);
  EXPECT_EQ(EditDistance("abc", ""), 3u);
  EXPECT_EQ(EditDistance("same", "same"), 0u);
  EXPECT_EQ(EditDistance("netvm", "netmv"), 2u);
  EXPECT_EQ(EditDistance("Work", "work"), 1u);  // bytewise: case counts here
}

TEST(ClosestMatchTest, SuggestsOnlyLikelyTyposIgnoringCase) {
  constexpr std::array<std::string_view, 4> keys = {"memory", "netvm", "template", "label"};
  EXPECT_EQ(ClosestMatch("memroy", keys, 3), "memory");
  EXPECT_EQ(ClosestMatch("netmv", keys), "netvm");
  EXPECT_EQ(ClosestMatch("Template", keys), "template");
  EXPECT_EQ(ClosestMatch("TEMPLATE", keys, 0), "template");
  EXPECT_EQ(ClosestMatch("colour", keys, 3), std::nullopt);
  EXPECT_EQ(ClosestMatch(std::string(100, 'm'), keys, 100), std::nullopt);
  EXPECT_EQ(ClosestMatch("lab", keys, 1), std::nullopt);
  EXPECT_EQ(ClosestMatch("lab", keys, 2), "label");
}

TEST(ClosestMatchTest, VectorOfStringsAndTies) {
  std::vector<std::string> verbs = {"start", "stop", "state"};
  EXPECT_EQ(ClosestMatch("strat", verbs), "start");
  EXPECT_EQ(ClosestMatch("stat", verbs), "start");  // one edit from start and state: first wins
  EXPECT_EQ(ClosestMatch("xyzzy", verbs), std::nullopt);
  EXPECT_EQ(ClosestMatch("x", std::vector<std::string>{}), std::nullopt);
}

TEST(EscapeControlTest, PrintableTextAndUtf8PassUnchanged) {
  EXPECT_EQ(EscapeControl("plain text, 100% ok ~"), "plain text, 100% ok ~");
  EXPECT_EQ(EscapeControl("gr\xc3\xbc\xc3\x9f \xe2\x82\xac \xf0\x9f\x90\xa7"),
            "gr\xc3\xbc\xc3\x9f \xe2\x82\xac \xf0\x9f\x90\xa7");  // ü ß € 🐧
  EXPECT_EQ(EscapeControl("\xc2\xa0\xc2\xa9"), "\xc2\xa0\xc2\xa9");  // U+00A0, U+00A9: after C1
  EXPECT_EQ(EscapeControl("back\\slash \\x41"), "back\\slash \\x41");
  EXPECT_EQ(EscapeControl(""), "");
}

TEST(EscapeControlTest, EscapeSequencesAreDefused) {
  EXPECT_EQ(EscapeControl("\x1b[2J\x1b[31mred"), "\\x1b[2J\\x1b[31mred");
  // OSC 52 (set the clipboard), terminated by BEL and by ST.
  EXPECT_EQ(EscapeControl("\x1b]52;c;ZXZpbA==\x07"), "\\x1b]52;c;ZXZpbA==\\x07");
  EXPECT_EQ(EscapeControl("\x1b]52;c;ZXZpbA==\x1b\\"), "\\x1b]52;c;ZXZpbA==\\x1b\\");
  EXPECT_EQ(EscapeControl(std::string("a\0b\r\b\x7f", 6)), "a\\x00b\\x0d\\x08\\x7f");
}

TEST(EscapeControlTest, C1ControlsAreEscaped) {
  EXPECT_EQ(EscapeControl("\xc2\x9b" "31m"), "\\xc2\\x9b31m");  // CSI
  EXPECT_EQ(EscapeControl("\xc2\x80\xc2\x9f"), "\\xc2\\x80\\xc2\\x9f");
  EXPECT_EQ(EscapeControl("\xc2\x9d" "52;c;x\xc2\x9c"), "\\xc2\\x9d52;c;x\\xc2\\x9c");  // OSC..ST
}

TEST(EscapeControlTest, InvalidUtf8IsEscapedBytewise) {
  EXPECT_EQ(EscapeControl("\xff\xfe"), "\\xff\\xfe");
  EXPECT_EQ(EscapeControl("a\x80z"), "a\\x80z");                   // stray continuation
  EXPECT_EQ(EscapeControl("\xe2\x82"), "\\xe2\\x82");              // truncated
  EXPECT_EQ(EscapeControl("\xe2\x82x"), "\\xe2\\x82x");
  EXPECT_EQ(EscapeControl("\xc0\xaf"), "\\xc0\\xaf");              // overlong '/'
  EXPECT_EQ(EscapeControl("\xe0\x80\xaf"), "\\xe0\\x80\\xaf");      // overlong, 3 bytes
  EXPECT_EQ(EscapeControl("\xed\xa0\x80"), "\\xed\\xa0\\x80");      // surrogate U+D800
  EXPECT_EQ(EscapeControl("\xf4\x90\x80\x80"), "\\xf4\\x90\\x80\\x80");  // above U+10FFFF
  EXPECT_EQ(EscapeControl("\xc1\x9b"), "\\xc1\\x9b");              // overlong C1 CSI
}

TEST(EscapeControlTest, TabsAndNewlinesInBothModes) {
  EXPECT_EQ(EscapeControl("a\tb\nc"), "a\tb\nc");
  EXPECT_EQ(EscapeControl("a\tb\nc", EscapeNewlines::kKeep), "a\tb\nc");
  EXPECT_EQ(EscapeControl("a\tb\nc", EscapeNewlines::kEscape), "a\\x09b\\x0ac");
  EXPECT_EQ(EscapeControl("\r\n", EscapeNewlines::kKeep), "\\x0d\n");
}

}  // namespace
TEST(SplitLinesTest, LinesWithoutNewlinesAndTheLastUnterminatedOne) {
  using V = std::vector<std::string_view>;
  EXPECT_EQ(SplitLines(""), V{});
  EXPECT_EQ(SplitLines("a\n"), V{"a"});
  EXPECT_EQ(SplitLines("a\n\nb"), (V{"a", "", "b"}));
  EXPECT_EQ(SplitLines("\n"), V{""});
}

}  // namespace tessera
