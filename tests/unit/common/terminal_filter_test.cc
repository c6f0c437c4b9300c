#include "common/terminal_filter.h"

#include <gtest/gtest.h>

namespace tessera {
namespace {

std::string FilterAll(std::string_view text) {
  TerminalFilter f;
  std::string out = f.Filter(text);
  return out + f.Finish();
}

TEST(TerminalFilterTest, TextNewlineAndTabPass) {
  EXPECT_EQ(FilterAll("hello, world\n\tindented ~!@#$%^&*()\n"),
            "hello, world\n\tindented ~!@#$%^&*()\n");
  EXPECT_EQ(FilterAll("Grüße, 東京, emoji \xf0\x9f\x98\x80"),
            "Grüße, 東京, emoji \xf0\x9f\x98\x80");
}

TEST(TerminalFilterTest, ControlsAndEscapeSequencesBecomeUnderscores) {
  // OSC 52 clipboard write, clear screen, title, CR overwrite, BEL, DEL.
  EXPECT_EQ(FilterAll("\x1b]52;c;aGk=\x07"), "_]52;c;aGk=_");
  EXPECT_EQ(FilterAll("\x1b[2J\x1b]0;title\x1b\\"), "_[2J_]0;title_\\");
  EXPECT_EQ(FilterAll(std::string_view("safe\rEVIL\b\x7f\x00", 12)), "safe_EVIL___");
  // C1 controls: as raw bytes (CSI 0x9b) and as UTF-8 (U+009B).
  EXPECT_EQ(FilterAll("\x9b"
                      "2J"),
            "_2J");
  EXPECT_EQ(FilterAll("\xc2\x9b"
                      "2J"),
            "__2J");
  // Bidi override (U+202E) reorders what follows on screen.
  EXPECT_EQ(FilterAll("a\xe2\x80\xae"
                      "b"),
            "a___b");
}

TEST(TerminalFilterTest, MalformedUtf8IsReplacedBytewise) {
  EXPECT_EQ(FilterAll("\xc0\xaf"), "__");            // overlong '/'
  EXPECT_EQ(FilterAll("\xed\xa0\x80"), "___");       // a surrogate
  EXPECT_EQ(FilterAll("\xf4\x90\x80\x80"), "____");  // beyond U+10FFFF
  EXPECT_EQ(FilterAll("\xe6\x9d"
                      "x"),
            "__x");                        // cut short by an ASCII byte
  EXPECT_EQ(FilterAll("\xe6\x9d"), "__");  // cut short by the end
}

TEST(TerminalFilterTest, SequencesSplitAcrossChunksSurvive) {
  std::string text = "東京\xf0\x9f\x98\x80!";
  for (size_t cut = 0; cut <= text.size(); ++cut) {
    TerminalFilter f;
    std::string out = f.Filter(text.substr(0, cut));
    out += f.Filter(text.substr(cut));
    out += f.Finish();
    EXPECT_EQ(out, text) << "cut at " << cut;
  }
  // A split escape sequence is still caught.
  TerminalFilter f;
  std::string out = f.Filter("a\x1b");
  out += f.Filter("[31mred");
  out += f.Finish();
  EXPECT_EQ(out, "a_[31mred");
}

}  // namespace
}  // namespace tessera
