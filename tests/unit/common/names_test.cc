#include "common/names.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>

namespace tessera {
namespace {

using ::testing::HasSubstr;

TEST(NamesTest, AcceptsTheNameSyntax) {
  for (const char* name : {"a", "work", "sys-net", "Work_2.test", "disp1", "Z.z-z_9",
                           "abcdefghijklmnopqrstuvwxyz01234"}) {
    EXPECT_TRUE(ValidateName(name)) << name;
    EXPECT_TRUE(IsValidName(name)) << name;
  }
}

TEST(NamesTest, RejectsWithWhatTheNameAndTheRule) {
  struct Case {
    std::string name;
    const char* rule;
  } cases[] = {
      {"", "must not be empty"},
      {"abcdefghijklmnopqrstuvwxyz012345", "longer than 31 characters"},
      {"1work", "must start with a letter"},
      {"-work", "must start with a letter"},
      {".", "must start with a letter"},
      {"..", "must start with a letter"},
      {"../x", "must start with a letter"},
      {"a/b", "may contain only letters"},
      {"a b", "may contain only letters"},
      {"work\xc3\xa9", "may contain only letters"},
      {std::string("a\0b", 3), "may contain only letters"},
  };
  for (const Case& c : cases) {
    EXPECT_FALSE(IsValidName(c.name)) << c.name;
    Status s = ValidateName(c.name, "template");
    ASSERT_FALSE(s) << c.name;
    EXPECT_EQ(s.error().errno_value(), EINVAL);
    EXPECT_THAT(s.error().message(), HasSubstr("template name")) << c.name;
    EXPECT_THAT(s.error().message(), HasSubstr(c.rule)) << c.name;
  }
  EXPECT_EQ(ValidateName("1x").error().message(), "qube name '1x' must start with a letter");
}

TEST(NamesTest, ControlBytesAreEscapedInTheMessage) {
  Status s = ValidateName("a\x1b]52;c;x\x07\n");
  ASSERT_FALSE(s);
  EXPECT_THAT(s.error().message(), HasSubstr("'a\\x1b]52;c;x\\x07\\x0a'"));
}

TEST(NamesTest, LongNamesAreCutInTheMessage) {
  Status s = ValidateName(std::string(1000, 'x'));
  ASSERT_FALSE(s);
  EXPECT_LT(s.error().message().size(), 120u);
  EXPECT_THAT(s.error().message(), HasSubstr("..."));
}

TEST(NamesTest, UserSpecsAreNamesOrIds) {
  for (const char* ok :
       {"user", "root", "_apt", "www-data", "u1", "1000", "0", "1000:100", "65535"}) {
    EXPECT_TRUE(IsUserSpec(ok)) << ok;
  }
  for (const char* bad :
       {"", "User", "1user", "-x", "a b", "a:b", "65536", "1:", ":1", "1:2:3", "a\n", "../x"}) {
    EXPECT_FALSE(IsUserSpec(bad)) << bad;
  }
  EXPECT_FALSE(IsUserSpec(std::string(33, 'a')));
}

TEST(NamesTest, StorePathsAreTopLevelWithNixsHashAlphabet) {
  const std::string hash = "0123456789abcdfghijklmnpqrsvwxyz";
  for (const std::string ok : {"hello-2.12", "a", "x+y_z.?=-1"}) {
    EXPECT_TRUE(IsStorePath("/nix/store/" + hash + "-" + ok)) << ok;
  }
  for (const std::string& bad : std::vector<std::string>{
           "/nix/store/" + hash, "/nix/store/" + hash + "-", "/nix/store/" + hash + "-a/bin",
           "/nix/store/" + hash + "-..", "/nix/store/" + hash + "-.hidden",
           "/nix/store/" + hash + "-a b",
           std::string("/nix/store/e123456789abcdfghijklmnpqrsvwxyz-a"),  // 'e': not base32
           "/nix/store/" + hash.substr(1) + "-a", "/nix/store//" + hash + "-a",
           "/nix/storex/" + hash + "-a", "nix/store/" + hash + "-a",
           "/nix/store/" + hash + "-" + std::string(212, 'a')}) {
    EXPECT_FALSE(IsStorePath(bad)) << bad;
  }
}

}  // namespace
}  // namespace tessera
