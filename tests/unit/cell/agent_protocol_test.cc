// The agent control channel's parsers against hostile input.

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <string>

#include "agent/protocol.h"

namespace tessera::agent {
namespace {

using ::testing::HasSubstr;

std::string Le32(uint32_t n) {
  std::string s;
  for (int i = 0; i < 4; ++i) s.push_back(static_cast<char>((n >> (8 * i)) & 0xff));
  return s;
}

TEST(FrameReader, SplitsAStreamIntoFrames) {
  FrameReader r;
  std::string stream = EncodeFrame("abc") + EncodeFrame("{}");
  // Byte by byte: frames come out whole and in order.
  std::vector<std::string> got;
  for (char c : stream) {
    r.Feed(&c, 1);
    auto next = r.Next();
    ASSERT_TRUE(next);
    if (*next) got.push_back(**next);
  }
  EXPECT_EQ(got, (std::vector<std::string>{"abc", "{}"}));
}

TEST(FrameReader, RejectsZeroAndOversizedLengths) {
  for (uint32_t bad : {0u, static_cast<uint32_t>(kMaxFrame + 1), 0xffffffffu}) {
    FrameReader r;
    std::string s = Le32(bad) + "xx";
    r.Feed(s.data(), s.size());
    auto next = r.Next();
    ASSERT_FALSE(next) << bad;
    EXPECT_EQ(next.error().errno_value(), EPROTO);
    // The stream stays failed: no resynchronisation on hostile input.
    EXPECT_FALSE(r.Next());
  }
}

TEST(FrameReader, MaxSizeFrameIsAccepted) {
  FrameReader r;
  std::string payload(kMaxFrame, 'x');
  std::string s = EncodeFrame(payload);
  r.Feed(s.data(), s.size());
  auto next = r.Next();
  ASSERT_TRUE(next && *next);
  EXPECT_EQ((*next)->size(), kMaxFrame);
}

TEST(ParseExec, RoundTrips) {
  ExecMessage m;
  m.argv = {"/bin/sh", "-c", "echo \"hi\" \xc3\xa9"};
  m.env = {"A=1", "PATH=/bin"};
  m.cwd = "/home/user";
  m.user = "user";
  m.stdio[0] = 0;
  m.stdio[1] = 1;
  m.stdio[2] = 1;
  m.nfds = 2;
  auto back = ParseExec(SerializeExec(m));
  ASSERT_TRUE(back) << back.error().ToString();
  EXPECT_EQ(back->argv, m.argv);
  EXPECT_EQ(back->env, m.env);
  EXPECT_EQ(back->cwd, m.cwd);
  EXPECT_EQ(back->user, m.user);
  EXPECT_EQ(back->stdio[2], 1);
  EXPECT_EQ(back->nfds, 2u);
}

struct Bad {
  const char* json;
  const char* why;
};

TEST(ParseExec, RejectsHostileMessages) {
  const Bad cases[] = {
      {"", "malformed"},
      {"[]", "not a JSON object"},
      {"{\"type\":\"exec\",\"argv\":[],\"stdio\":[-1,-1,-1],\"nfds\":0}", "empty \"argv\""},
      {"{\"type\":\"exec\",\"argv\":[\"\"],\"stdio\":[-1,-1,-1],\"nfds\":0}", "empty program"},
      {"{\"type\":\"exec\",\"argv\":[1],\"stdio\":[-1,-1,-1],\"nfds\":0}", "non-string"},
      {"{\"type\":\"run\",\"argv\":[\"x\"],\"stdio\":[-1,-1,-1],\"nfds\":0}", "\"type\""},
      {"{\"type\":\"exec\",\"argv\":[\"x\"],\"stdio\":[-1,-1,-1],\"nfds\":0,\"extra\":1}", "unknown key"},
      {"{\"type\":\"exec\",\"argv\":[\"x\"],\"stdio\":[-1,-1,-1],\"nfds\":4}", "out of range"},
      {"{\"type\":\"exec\",\"argv\":[\"x\"],\"stdio\":[0,-1,-1],\"nfds\":0}", "index out of range"},
      {"{\"type\":\"exec\",\"argv\":[\"x\"],\"stdio\":[-1,-1],\"nfds\":0}", "array of 3"},
      {"{\"type\":\"exec\",\"argv\":[\"x\"],\"stdio\":[-1,-1,-1],\"nfds\":1}", "not used"},
      {"{\"type\":\"exec\",\"argv\":[\"x\"],\"stdio\":[-1,-1,-1],\"nfds\":0,\"cwd\":\"rel\"}", "absolute"},
      {"{\"type\":\"exec\",\"argv\":[\"x\"],\"stdio\":[-1,-1,-1],\"nfds\":0,\"env\":[\"NOEQ\"]}", "NAME="},
      {"{\"type\":\"exec\",\"argv\":[\"a\\u0000b\"],\"stdio\":[-1,-1,-1],\"nfds\":0}", "NUL"},
      {"{\"type\":\"exec\",\"argv\":[\"x\"],\"stdio\":[-1,-1,-1],\"nfds\":18446744073709551615}", "out of range"},
      {"{\"a\":[[[[[[[[[[1]]]]]]]]]]}", "nested too deeply"},
  };
  for (const auto& c : cases) {
    auto r = ParseExec(c.json);
    ASSERT_FALSE(r) << c.json;
    EXPECT_THAT(r.error().ToString(), HasSubstr(c.why)) << c.json;
  }
}

TEST(ParseExec, RejectsTooManyArguments) {
  std::string json = "{\"type\":\"exec\",\"stdio\":[-1,-1,-1],\"nfds\":0,\"argv\":[";
  for (size_t i = 0; i <= kMaxArgs; ++i) json += (i ? ",\"a\"" : "\"a\"");
  json += "]}";
  EXPECT_FALSE(ParseExec(json));
}

TEST(ParseReply, AcceptsTheThreeKindsAndRejectsTheRest) {
  auto started = ParseReply("{\"type\":\"started\",\"pid\":12}");
  ASSERT_TRUE(started);
  EXPECT_EQ(started->kind, Reply::Kind::kStarted);
  EXPECT_EQ(started->pid, 12);
  auto exit = ParseReply(SerializeReply({Reply::Kind::kExit, 0, 137, ""}));
  ASSERT_TRUE(exit);
  EXPECT_EQ(exit->code, 137);
  auto error = ParseReply(SerializeReply({Reply::Kind::kError, 0, 127, "no \xff such"}));
  ASSERT_TRUE(error) << error.error().ToString();
  EXPECT_EQ(error->code, 127);
  for (const char* bad : {"{\"type\":\"exit\",\"code\":256}", "{\"type\":\"exit\",\"code\":-1}",
                          "{\"type\":\"exit\"}", "{\"type\":\"started\",\"pid\":0}",
                          "{\"type\":\"boom\"}", "{\"type\":\"exit\",\"code\":1,\"x\":2}",
                          "{\"type\":\"exit\",\"code\":1.5}", "null"}) {
    EXPECT_FALSE(ParseReply(bad)) << bad;
  }
}

TEST(SendReadFrame, PassFdsAndRefuseUnexpectedOnes) {
  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  int pipefd[2];
  ASSERT_EQ(::pipe2(pipefd, O_CLOEXEC), 0);
  int fds[] = {pipefd[1]};
  ASSERT_TRUE(SendFrame(sv[0], "{\"x\":1}", fds));
  std::vector<UniqueFd> got;
  auto text = ReadFrame(sv[1], &got);
  ASSERT_TRUE(text);
  EXPECT_EQ(*text, "{\"x\":1}");
  ASSERT_EQ(got.size(), 1u);
  ASSERT_EQ(::write(got[0].get(), "z", 1), 1);
  char c = 0;
  ASSERT_EQ(::read(pipefd[0], &c, 1), 1);
  EXPECT_EQ(c, 'z');
  // A reader that expects no fds refuses a frame carrying one.
  ASSERT_TRUE(SendFrame(sv[0], "{}", fds));
  EXPECT_FALSE(ReadFrame(sv[1], nullptr));
  // A truncated frame is an error, not a hang or a short payload.
  int sv2[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv2), 0);
  std::string partial = Le32(10) + "abc";
  ASSERT_EQ(::write(sv2[0], partial.data(), partial.size()), static_cast<ssize_t>(partial.size()));
  ::close(sv2[0]);
  auto cut = ReadFrame(sv2[1], nullptr);
  ASSERT_FALSE(cut);
  EXPECT_EQ(cut.error().errno_value(), ECONNRESET);
  for (int fd : {sv[0], sv[1], pipefd[0], pipefd[1], sv2[1]}) ::close(fd);
}

}  // namespace
}  // namespace tessera::agent
