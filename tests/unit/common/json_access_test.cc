// Strict reads of peer JSON: every wrong shape is an error naming the key.

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "common/json_access.h"

namespace tessera {
namespace {

using nlohmann::json;
using ::testing::HasSubstr;

TEST(JsonAccess, ObjectParsingIsBoundedByDepthAndSize) {
  EXPECT_TRUE(ParseJsonObject(R"({"a":[1,[2]]})", {.max_depth = 3}));
  EXPECT_FALSE(ParseJsonObject(R"({"a":[1,[2]]})", {.max_depth = 2}));
  EXPECT_TRUE(JsonDepthWithin(R"({"a":"[[[[[[["})", 1));  // brackets in strings do not count
  EXPECT_FALSE(ParseJsonObject("[1]"));
  EXPECT_FALSE(ParseJsonObject("{"));
  EXPECT_FALSE(ParseJsonObject(std::string(100, ' '), {.max_bytes = 10}));
}

TEST(JsonAccess, TypedReadsRefuseWrongTypesWithTheKey) {
  json j = json::parse(R"({"s":"x","i":5,"b":true,"f":1.5,"a":["x","y"],"o":{},"n":null,
                          "big":18446744073709551615,"nul":"a\u0000b"})");
  EXPECT_EQ(*RequiredString(j, "s", "m"), "x");
  EXPECT_THAT(RequiredString(j, "i", "m").error().message(), HasSubstr("m: \"i\" is not a string"));
  EXPECT_THAT(RequiredString(j, "missing", "m").error().message(), HasSubstr("is missing"));
  EXPECT_THAT(RequiredString(j, "nul", "m").error().message(), HasSubstr("NUL"));
  EXPECT_EQ(*StringOr(j, "missing", "d", "m"), "d");
  EXPECT_EQ(*RequiredInt(j, "i", 0, 10, "m"), 5);
  EXPECT_THAT(RequiredInt(j, "i", 6, 10, "m").error().message(), HasSubstr("out of range"));
  EXPECT_FALSE(RequiredInt(j, "f", 0, 10, "m"));
  EXPECT_FALSE(RequiredInt(j, "b", 0, 10, "m"));
  EXPECT_FALSE(RequiredInt(j, "big", 0, INT64_MAX, "m"));
  EXPECT_EQ(*IntOr(j, "missing", 7, 0, 10, "m"), 7);
  EXPECT_EQ(*BoolOr(j, "b", false, "m"), true);
  // The crash found in review: {"all":1} read as a bool.
  EXPECT_THAT(BoolOr(j, "i", false, "qube.stop").error().message(),
              HasSubstr("qube.stop: \"i\" is not true or false"));
  EXPECT_EQ(StringArray(j, "a", "m")->size(), 2u);
  EXPECT_FALSE(StringArray(j, "s", "m"));
  EXPECT_FALSE(StringArray(j, "a", "m", {.max_items = 1}));
  EXPECT_FALSE(StringArray(j, "missing", "m", {.required = true}));
  EXPECT_EQ(*OptionalObject(j, "missing", "m"), nullptr);
  EXPECT_NE(*OptionalObject(j, "o", "m"), nullptr);
  EXPECT_FALSE(OptionalObject(j, "n", "m"));
  EXPECT_TRUE(OnlyKeys(json::parse(R"({"a":1})"), {"a", "b"}, "m"));
  EXPECT_THAT(OnlyKeys(json::parse(R"({"c":1})"), {"a"}, "m").error().message(),
              HasSubstr("\"c\" is not a known key"));
}

TEST(JsonAccess, DumpNeverThrowsOnInvalidUtf8) {
  json j = {{"argv", std::string("\xff\xfe")}};
  EXPECT_FALSE(DumpJson(j).empty());
}

}  // namespace
}  // namespace tessera
