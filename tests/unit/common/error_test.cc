#include "common/error.h"

#include <gtest/gtest.h>

#include <cerrno>

namespace tessera {
namespace {

Result<int> Half(int x) {
  if (x % 2 != 0) return Err("odd: " + std::to_string(x));
  return x / 2;
}

Result<int> Quarter(int x) {
  int half = TRY(Half(x));
  return TRY(Half(half));
}

Status CheckPositive(int x) {
  if (x <= 0) return Err(Error("not positive", EINVAL));
  return Ok();
}

Status Chain(int x) {
  TRY_CTX(CheckPositive(x), "checking input");
  return Ok();
}

TEST(ErrorTest, TryPropagatesValue) {
  auto r = Quarter(12);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(*r, 3);
}

TEST(ErrorTest, TryPropagatesFirstError) {
  auto r = Quarter(6);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().message(), "odd: 3");
}

TEST(ErrorTest, ToStringIncludesCauseAndErrno) {
  auto r = Chain(-1);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().errno_value(), EINVAL);
  ASSERT_NE(r.error().cause(), nullptr);
  EXPECT_EQ(r.error().ToString(), "checking input: not positive: Invalid argument");
}

TEST(ErrorTest, FromErrnoKeepsErrno) {
  errno = ENOENT;
  Error e = Error::FromErrno("open /nope");
  EXPECT_EQ(e.errno_value(), ENOENT);
  EXPECT_EQ(e.ToString(), "open /nope: No such file or directory");
}

}  // namespace
}  // namespace tessera
