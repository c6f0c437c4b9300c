// The admin and agent messages: strict parsing (a wrong type is an error,
// never an exception), round trips.

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "wire/admin_protocol.h"
#include "wire/agent_protocol.h"
#include "wire/frame.h"

namespace tessera::wire {
namespace {

using ::testing::HasSubstr;

TEST(AdminRequest, ParsesTheShapeAndRefusesEverythingElse) {
  auto ok = ParseAdminRequest(R"({"v":2,"id":3,"method":"qube.start","params":{"qube":"work"}})");
  ASSERT_TRUE(ok) << ok.error().ToString();
  EXPECT_EQ(ok->id, 3);
  EXPECT_EQ(ok->method, "qube.start");
  EXPECT_EQ(ok->params["qube"], "work");
  EXPECT_TRUE(ParseAdminRequest(R"({"v":2,"id":1,"method":"qube.list"})"));
  EXPECT_EQ(SerializeAdminRequest(5, "m", {{"a", 1}}),
            R"({"id":5,"method":"m","params":{"a":1},"v":2})");
  const char* bad[] = {
      "not json",
      "[1]",
      R"({"v":1,"id":1,"method":"x"})",                  // old protocol
      R"({"v":"2","id":1,"method":"x"})",
      R"({"id":1,"method":"x"})",
      R"({"v":2,"method":"x"})",
      R"({"v":2,"id":-1,"method":"x"})",
      R"({"v":2,"id":1.5,"method":"x"})",
      R"({"v":2,"id":1,"method":""})",
      R"({"v":2,"id":1,"method":7})",
      R"({"v":2,"id":1,"method":"x","params":[1]})",
      R"({"v":2,"id":1,"method":"x","extra":true})",
      R"({"v":2,"id":1,"method":"x\u0000y"})",
  };
  for (const char* text : bad) EXPECT_FALSE(ParseAdminRequest(text)) << text;
  std::string deep = R"({"v":2,"id":1,"method":"x","params":)" + std::string(100, '[') +
                     std::string(100, ']') + "}";
  auto too_deep = ParseAdminRequest(deep);
  ASSERT_FALSE(too_deep);
  EXPECT_THAT(too_deep.error().message(), HasSubstr("nested too deeply"));
}

TEST(AdminReply, OkAndErrorAndMalformed) {
  auto ok = ParseAdminReply(OkResponse(4, {{"x", 1}}));
  ASSERT_TRUE(ok);
  EXPECT_TRUE(ok->ok);
  EXPECT_EQ(ok->id, 4);
  EXPECT_EQ(ok->result["x"], 1);
  auto err = ParseAdminReply(ErrorResponse(4, codes::kNoSuchQube, "no such qube: x"));
  ASSERT_TRUE(err);
  EXPECT_FALSE(err->ok);
  EXPECT_EQ(err->code, codes::kNoSuchQube);
  EXPECT_EQ(err->message, "no such qube: x");
  EXPECT_FALSE(ParseAdminReply(R"({"id":1,"ok":false})"));
  EXPECT_FALSE(ParseAdminReply(R"({"id":1,"ok":"yes"})"));
}

TEST(OpenMessage, RoundTripsAndChecksDescriptorCount) {
  OpenMessage m;
  m.argv = {"/bin/sh", "-c", "echo hi"};
  m.env = {"A=1", "PATH=/bin"};
  m.cwd = "/tmp";
  m.user = "user";
  m.stdio[0] = Stdio::kPipe;
  m.stdio[1] = Stdio::kFd;
  m.stdio[2] = Stdio::kFd;
  EXPECT_EQ(FdsNeeded(m), 2u);
  auto back = ParseOpen(SerializeOpen(m), 2);
  ASSERT_TRUE(back) << back.error().ToString();
  EXPECT_EQ(back->argv, m.argv);
  EXPECT_EQ(back->env, m.env);
  EXPECT_EQ(back->cwd, "/tmp");
  EXPECT_EQ(back->user, "user");
  EXPECT_EQ(back->stdio[0], Stdio::kPipe);
  EXPECT_EQ(back->stdio[2], Stdio::kFd);
  auto wrong = ParseOpen(SerializeOpen(m), 1);
  ASSERT_FALSE(wrong);
  EXPECT_THAT(wrong.error().message(), HasSubstr("1 descriptors attached for 2"));
}

TEST(OpenMessage, RefusesHostileMessages) {
  const char* bad[] = {
      R"({"argv":[],"stdio":["null","null","null"]})",
      R"({"argv":[""],"stdio":["null","null","null"]})",
      R"({"argv":[1],"stdio":["null","null","null"]})",
      R"({"argv":["x"],"stdio":["null","null"]})",
      R"({"argv":["x"],"stdio":["null","null","tty"]})",
      R"({"argv":["x"],"cwd":"relative","stdio":["null","null","null"]})",
      R"({"argv":["x"],"env":["NOEQUALS"],"stdio":["null","null","null"]})",
      R"({"argv":["x"],"env":["=v"],"stdio":["null","null","null"]})",
      R"({"argv":["x"],"user":"","stdio":["null","null","null"]})",
      R"({"argv":["x"],"user":5,"stdio":["null","null","null"]})",
      R"({"argv":["x"],"stdio":["null","null","null"],"extra":1})",
      R"({"argv":["a\u0000b"],"stdio":["null","null","null"]})",
  };
  for (const char* text : bad) EXPECT_FALSE(ParseOpen(text, 0)) << text;
  std::string many = R"({"argv":[)";
  for (size_t i = 0; i <= kMaxArgs; ++i) many += std::string(i ? "," : "") + "\"a\"";
  many += R"(],"stdio":["null","null","null"]})";
  EXPECT_FALSE(ParseOpen(many, 0));
}

TEST(OpenMessage, TtyAndDetachRoundTripWithTheirStdioRules) {
  OpenMessage m;
  m.argv = {"sh"};
  m.stdio[0] = m.stdio[1] = Stdio::kPipe;
  m.tty = WindowSize{33, 99};
  auto back = ParseOpen(SerializeOpen(m), 0);
  ASSERT_TRUE(back) << back.error().ToString();
  ASSERT_TRUE(back->tty);
  EXPECT_EQ(*back->tty, (WindowSize{33, 99}));
  EXPECT_EQ(back->cwd, "") << "no cwd: the user's home";
  EXPECT_FALSE(back->detach);

  OpenMessage d;
  d.argv = {"sleep", "9"};
  d.detach = true;
  auto detached = ParseOpen(SerializeOpen(d), 0);
  ASSERT_TRUE(detached);
  EXPECT_TRUE(detached->detach);

  const char* bad[] = {
      // A tty replaces all three streams: only pipe, pipe, null fits.
      R"({"argv":["x"],"stdio":["pipe","pipe","pipe"],"tty":{"rows":1,"cols":1}})",
      R"({"argv":["x"],"stdio":["pipe","pipe","null"],"tty":{"rows":0,"cols":1}})",
      R"({"argv":["x"],"stdio":["pipe","pipe","null"],"tty":{"rows":1,"cols":65536}})",
      R"({"argv":["x"],"stdio":["pipe","pipe","null"],"tty":{"rows":1}})",
      R"({"argv":["x"],"stdio":["pipe","pipe","null"],"tty":{"rows":1,"cols":1,"x":1}})",
      R"({"argv":["x"],"stdio":["pipe","pipe","null"],"tty":[24,80]})",
      // Nothing may be attached to a session nobody waits for.
      R"({"argv":["x"],"stdio":["pipe","null","null"],"detach":true})",
      R"({"argv":["x"],"stdio":["null","null","null"],"detach":1})",
  };
  for (const char* text : bad) EXPECT_FALSE(ParseOpen(text, 0)) << text;
}

TEST(WindowSizeFrame, RoundTripsAndRefusesZero) {
  auto size = DecodeWindowSize(EncodeWindowSize({24, 80}));
  ASSERT_TRUE(size);
  EXPECT_EQ(*size, (WindowSize{24, 80}));
  EXPECT_EQ(*DecodeWindowSize(EncodeWindowSize({65535, 1})), (WindowSize{65535, 1}));
  EXPECT_FALSE(DecodeWindowSize(EncodeWindowSize({0, 80})));
  EXPECT_FALSE(DecodeWindowSize("abc"));
}

TEST(SessionError, CodesAreTheQubesOnesAndTextIsBounded) {
  auto e = ParseSessionError(SerializeSessionError({127, "cannot run x"}));
  ASSERT_TRUE(e);
  EXPECT_EQ(e->code, 127);
  EXPECT_FALSE(ParseSessionError(R"({"code":0,"message":"x"})"));
  EXPECT_FALSE(ParseSessionError(R"({"code":128,"message":"x"})"));
  auto long_text = ParseSessionError(SerializeSessionError({125, std::string(50000, 'x')}));
  ASSERT_TRUE(long_text);
  EXPECT_LE(long_text->message.size(), 1024u);
}

}  // namespace
}  // namespace tessera::wire

namespace tessera::wire {
namespace {

TEST(ServiceCall, OpenCarriesAServiceInsteadOfArgv) {
  OpenMessage m;
  m.service = ServiceCall{"qubes.Filecopy", "a+b.c", "work", "@default"};
  m.user = "user";
  m.stdio[0] = m.stdio[1] = m.stdio[2] = Stdio::kPipe;
  auto back = ParseOpen(SerializeOpen(m), 0);
  ASSERT_TRUE(back) << back.error().ToString();
  ASSERT_TRUE(back->service);
  EXPECT_EQ(*back->service, *m.service);
  EXPECT_TRUE(back->argv.empty());
  EXPECT_EQ(back->service->FullName(), "qubes.Filecopy+a+b.c");
  EXPECT_EQ(ProgramName(*back), "service qubes.Filecopy+a+b.c");
}

TEST(ServiceCall, HostileServiceBlocksAreRefused) {
  auto open = [](const std::string& service) {
    return ParseOpen(R"({"stdio":["null","null","null"],"service":)" + service + "}", 0);
  };
  EXPECT_TRUE(open(R"({"name":"a.B_c-1","source":"work"})"));
  for (const char* bad : {
           R"({"name":"../x","source":"w"})",  // a path
           R"({"name":"a/b","source":"w"})",
           R"({"name":"..","source":"w"})",
           R"({"name":"a+b","source":"w"})",  // '+' only in the argument
           R"({"name":"","source":"w"})",
           R"({"name":"a","argument":"x/y","source":"w"})",
           R"({"name":"a","argument":"..","source":"w"})",
           R"({"name":"a","source":""})",
           R"({"name":"a","source":"w x"})",
           R"({"name":"a","source":"w","requested_target":"a\nb"})",
           R"({"name":"a","source":"w","extra":1})",
           R"("a")",
       }) {
    EXPECT_FALSE(open(bad)) << bad;
  }
  std::string long_name(65, 'a');
  EXPECT_FALSE(open(R"({"name":")" + long_name + R"(","source":"w"})"));
  // argv and service exclude each other.
  EXPECT_FALSE(ParseOpen(
      R"({"argv":["x"],"stdio":["null","null","null"],"service":{"name":"a","source":"w"}})", 0));
}

TEST(ServiceCall, LookupOrderIsQubesWithTesseraDirectoriesBesideThem) {
  ServiceCall call{"test.X", "arg", "dom0", ""};
  EXPECT_EQ(ServiceCandidates(call),
            (std::vector<std::string>{
                "/usr/local/etc/qubes-rpc/test.X+arg", "/usr/local/etc/tessera-rpc/test.X+arg",
                "/etc/qubes-rpc/test.X+arg", "/etc/tessera-rpc/test.X+arg",
                "/run/tessera/tools/rpc/test.X+arg", "/usr/local/etc/qubes-rpc/test.X",
                "/usr/local/etc/tessera-rpc/test.X", "/etc/qubes-rpc/test.X",
                "/etc/tessera-rpc/test.X", "/run/tessera/tools/rpc/test.X"}));
  call.argument.clear();
  EXPECT_EQ(ServiceCandidates(call).size(), 5u);
  EXPECT_EQ(ServiceCandidates(call)[0], "/usr/local/etc/qubes-rpc/test.X");
}

}  // namespace
}  // namespace tessera::wire

namespace tessera::wire {
namespace {

TEST(CallMessage, RoundTripsAndNamesNoSource) {
  CallMessage call{"@dispvm:dvm", "qubes.OpenInVM+a.pdf"};
  auto back = ParseCall(SerializeCall(call));
  ASSERT_TRUE(back);
  EXPECT_EQ(*back, call);
  EXPECT_TRUE(ParseCall(R"({"service":"a"})"));  // target "" = @default
  for (const char* bad : {R"({"target":"w","service":"a","source":"dom0"})",  // no such key
                          R"({"target":"w"})", R"({"target":"w","service":""})",
                          R"({"target":1,"service":"a"})", R"({"service":{"x":1}})", "[]"}) {
    EXPECT_FALSE(ParseCall(bad)) << bad;
  }
  EXPECT_FALSE(ParseCall(R"({"service":")" + std::string(321, 'a') + R"("})"));
  EXPECT_FALSE(ParseCall(R"({"target":")" + std::string(129, 'a') + R"(","service":"a"})"));
}

TEST(CallMessage, EachSideAcceptsOnlyItsFramesOfACall) {
  auto allows = [](DecoderRules r, FrameType t) { return r.Allows(t); };
  // tessera-call -> agent: the host's part of a session, and the call.
  for (FrameType t : {FrameType::kCall, FrameType::kData, FrameType::kEof, FrameType::kCredit,
                      FrameType::kClose}) {
    EXPECT_TRUE(allows(DecoderRules::CallServer(), t)) << ToString(t);
    EXPECT_FALSE(allows(DecoderRules::CallClient(), t) && t == FrameType::kCall);
  }
  for (FrameType t : {FrameType::kOpen, FrameType::kHello, FrameType::kExit, FrameType::kSignal}) {
    EXPECT_FALSE(allows(DecoderRules::CallServer(), t)) << ToString(t);
  }
  EXPECT_EQ(DecoderRules::CallServer().max_fds, 0);
  EXPECT_LE(DecoderRules::CallServer().max_json, 1024u);
  // The host takes calls from agents; agents take the host's answers.
  EXPECT_TRUE(allows(DecoderRules::HostSide(), FrameType::kCall));
  EXPECT_TRUE(allows(DecoderRules::HostSide(), FrameType::kClose));
  EXPECT_TRUE(allows(DecoderRules::AgentSide(), FrameType::kExit));
  EXPECT_FALSE(allows(DecoderRules::AgentSide(), FrameType::kCall));
  EXPECT_FALSE(allows(DecoderRules::AdminServer(), FrameType::kCall));
  // An oversized call is a stream failure, before any parsing.
  FrameDecoder decoder(DecoderRules::CallServer());
  std::string frame = EncodeFrame(FrameType::kCall, 1, 0, std::string(2000, ' '));
  decoder.Feed(frame.data(), frame.size());
  EXPECT_FALSE(decoder.Next());
}

}  // namespace
}  // namespace tessera::wire

#include "wire/filecopy.h"

namespace tessera::wire {
namespace {

TEST(Filecopy, HeadersRoundTripAndRefuseWhatNoEntryHas) {
  FilecopyHeader h{FilecopyType::kFile, 5, 0644, 7, 1700000000, 12};
  std::string bytes = EncodeFilecopyHeader(h);
  ASSERT_EQ(bytes.size(), kFilecopyHeaderSize);
  EXPECT_EQ(*ParseFilecopyHeader(bytes), h);
  auto bad = [&](auto edit) {
    std::string b = bytes;
    edit(b);
    return !ParseFilecopyHeader(b);
  };
  EXPECT_TRUE(bad([](std::string& b) { b[0] = 'B'; }));    // a device? never
  EXPECT_TRUE(bad([](std::string& b) { b[0] = 'P'; }));    // a FIFO? never
  EXPECT_TRUE(bad([](std::string& b) { b[1] = 1; }));      // reserved
  EXPECT_TRUE(bad([](std::string& b) { b[4] = 0; }));      // empty name
  EXPECT_TRUE(bad([](std::string& b) { b[15] = 0x7f; }));  // nanoseconds out of range
  EXPECT_TRUE(bad([](std::string& b) { b.pop_back(); }));
  EXPECT_FALSE(ParseFilecopyHeader(EncodeFilecopyHeader({FilecopyType::kDir, 1, 0755, 0, 0, 9})));
  EXPECT_FALSE(ParseFilecopyHeader(EncodeFilecopyHeader({FilecopyType::kEnd, 1, 0, 0, 0, 0})));
  EXPECT_TRUE(ParseFilecopyHeader(EncodeFilecopyHeader({})));
}

TEST(Filecopy, NamesStayInsideTheIncomingDirectory) {
  for (const char* ok : {"a", "a/b", "dir/.hidden", "x y", "日本"}) {
    EXPECT_TRUE(CheckFilecopyName(ok)) << ok;
  }
  for (const char* bad :
       {"", "/etc/passwd", "..", "a/../..", "a/./b", "a//b", "a/", "a\nb", "a\x1b[2J", "a\x7f"}) {
    EXPECT_FALSE(CheckFilecopyName(bad)) << bad;
  }
  EXPECT_FALSE(CheckFilecopyName(std::string(256, 'a')));
}

TEST(Filecopy, SymlinksNeverLeaveTheCopiedTree) {
  EXPECT_TRUE(CheckFilecopySymlink("a/l", "../b"));
  EXPECT_TRUE(CheckFilecopySymlink("l", "b/c"));
  EXPECT_TRUE(CheckFilecopySymlink("a/b/l", "../../c"));
  EXPECT_FALSE(CheckFilecopySymlink("l", "../b"));  // above the root
  EXPECT_FALSE(CheckFilecopySymlink("a/l", "../../b"));
  EXPECT_FALSE(CheckFilecopySymlink("l", "/etc/shadow"));  // absolute
  EXPECT_FALSE(CheckFilecopySymlink("l", "s/.."));  // ".." after a name: through a link it climbs
  EXPECT_FALSE(CheckFilecopySymlink("l", "./x"));
  EXPECT_FALSE(CheckFilecopySymlink("l", "a//b"));
  EXPECT_FALSE(CheckFilecopySymlink("l", "a\nb"));
}

}  // namespace
}  // namespace tessera::wire
