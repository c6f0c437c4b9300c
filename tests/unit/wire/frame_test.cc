// The frame codec: what a decoder accepts and refuses, descriptors claimed
// by the frame that carries them, non-blocking output, blocking reads.

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <string>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "wire/frame.h"
#include "wire/socket_io.h"

namespace tessera::wire {
namespace {

using ::testing::HasSubstr;

struct Pair {
  UniqueFd a, b;
  explicit Pair(int type = SOCK_STREAM) {
    int fds[2];
    EXPECT_EQ(::socketpair(AF_UNIX, type | SOCK_CLOEXEC, 0, fds), 0);
    a.reset(fds[0]);
    b.reset(fds[1]);
  }
};

std::string Header(uint32_t length, uint32_t session, uint8_t type, uint8_t stream, uint8_t nfds,
                   uint8_t reserved = 0) {
  std::string h;
  for (uint32_t v : {length, session}) {
    for (int i = 0; i < 4; ++i) h.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
  }
  h += {static_cast<char>(type), static_cast<char>(stream), static_cast<char>(nfds),
        static_cast<char>(reserved)};
  return h;
}

// Feeds `bytes` and returns the decoder's first verdict: a frame, "more", or the error.
std::string Verdict(DecoderRules rules, const std::string& bytes) {
  FrameDecoder d(rules);
  d.Feed(bytes.data(), bytes.size());
  auto f = d.Next();
  if (!f) return "error: " + f.error().message();
  if (!*f) return "more";
  return std::string(ToString((*f)->type));
}

TEST(FrameDecoder, SplitsAStreamAtAnyByteBoundary) {
  std::string stream = EncodeFrame(FrameType::kRequest, 0, 0, R"({"a":1})") +
                       EncodeFrame(FrameType::kData, 7, kStdin, "hello") +
                       EncodeFrame(FrameType::kEof, 7, kStdin, "") +
                       EncodeFrame(FrameType::kSignal, 7, 0, EncodeU32(2));
  for (size_t chunk = 1; chunk <= stream.size(); ++chunk) {
    FrameDecoder d(DecoderRules::AdminServer());
    std::vector<Frame> frames;
    for (size_t off = 0; off < stream.size(); off += chunk) {
      d.Feed(stream.data() + off, std::min(chunk, stream.size() - off));
      while (auto f = *d.Next()) frames.push_back(std::move(*f));
    }
    ASSERT_EQ(frames.size(), 4u) << "chunk " << chunk;
    EXPECT_EQ(frames[0].payload, R"({"a":1})");
    EXPECT_EQ(frames[1].session, 7u);
    EXPECT_EQ(frames[1].payload, "hello");
    EXPECT_EQ(frames[2].type, FrameType::kEof);
    EXPECT_EQ(*DecodeU32(frames[3]), 2u);
    EXPECT_EQ(d.buffered(), 0u);
  }
}

TEST(FrameDecoder, RefusesWhatBreaksTheRules) {
  DecoderRules admin = DecoderRules::AdminServer();
  EXPECT_EQ(Verdict(admin, Header(2, 0, 2, 0, 0) + "{}"), "request");
  EXPECT_THAT(Verdict(admin, Header(2, 0, 99, 0, 0)), HasSubstr("unknown frame type 99"));
  EXPECT_THAT(Verdict(admin, Header(2, 0, 2, 0, 0, 1)), HasSubstr("reserved"));
  EXPECT_THAT(Verdict(admin, Header(0, 0, 2, 0, 0)), HasSubstr("payload of 0 bytes"));
  EXPECT_THAT(Verdict(admin, Header(kMaxJsonPayload + 1, 0, 2, 0, 0)), HasSubstr("payload of"));
  EXPECT_THAT(Verdict(admin, Header(kMaxDataPayload + 1, 1, 10, 0, 0)), HasSubstr("payload of"));
  EXPECT_THAT(Verdict(admin, Header(3, 1, 13, 0, 0)), HasSubstr("payload of 3"));  // signal != 4
  EXPECT_THAT(Verdict(admin, Header(1, 1, 10, 3, 0)), HasSubstr("bad stream 3"));
  EXPECT_THAT(Verdict(admin, Header(2, 0, 2, 1, 0)), HasSubstr("bad stream 1"));
  EXPECT_THAT(Verdict(admin, Header(1, 1, 10, 0, 1)), HasSubstr("descriptors on a data"));
  EXPECT_THAT(Verdict(admin, Header(2, 0, 2, 0, 4)), HasSubstr("4 descriptors"));
  // Per side: an admin server never takes responses, an agent never takes
  // calls (it makes them), a caller in a qube never opens sessions.
  EXPECT_THAT(Verdict(admin, Header(2, 0, 3, 0, 0) + "{}"), HasSubstr("unexpected response"));
  EXPECT_THAT(Verdict(DecoderRules::AgentSide(), Header(2, 1, 18, 0, 0)),
              HasSubstr("unexpected call"));
  EXPECT_THAT(Verdict(DecoderRules::CallServer(), Header(2, 1, 8, 0, 0)),
              HasSubstr("unexpected open"));
  // The host takes only small JSON from an agent.
  EXPECT_THAT(Verdict(DecoderRules::HostSide(), Header(100000, 1, 15, 0, 0)), HasSubstr("payload of"));
  // A size is refused from the header alone: nothing that large is buffered.
  EXPECT_EQ(Verdict(admin, Header(100, 0, 2, 0, 0)), "more");
}

TEST(FrameDecoder, AFailedStreamStaysFailed) {
  FrameDecoder d(DecoderRules::AdminServer());
  std::string bad = Header(2, 0, 99, 0, 0) + "{}";
  d.Feed(bad.data(), bad.size());
  EXPECT_FALSE(d.Next());
  std::string good = EncodeFrame(FrameType::kRequest, 0, 0, "{}");
  d.Feed(good.data(), good.size());
  EXPECT_FALSE(d.Next());
  EXPECT_TRUE(d.failed());
}

TEST(FrameDecoder, DescriptorsGoToTheFrameThatDeclaresThem) {
  Pair p;
  int pipes[2];
  ASSERT_EQ(::pipe2(pipes, O_CLOEXEC), 0);
  UniqueFd r(pipes[0]), w(pipes[1]);
  // A frame without descriptors, then one with two, then one without.
  ASSERT_TRUE(WriteFrame(p.a.get(), FrameType::kRequest, 0, 0, R"({"n":1})"));
  int two[2] = {w.get(), w.get()};
  ASSERT_TRUE(WriteFrame(p.a.get(), FrameType::kRequest, 0, 0, R"({"n":2})", two));
  ASSERT_TRUE(WriteFrame(p.a.get(), FrameType::kRequest, 0, 0, R"({"n":3})"));
  FrameDecoder d(DecoderRules::AdminServer());
  std::vector<Frame> frames;
  while (frames.size() < 3) {
    auto f = ReadFrame(p.b.get(), &d);
    ASSERT_TRUE(f) << f.error().ToString();
    ASSERT_TRUE(*f);
    frames.push_back(std::move(**f));
  }
  EXPECT_TRUE(frames[0].fds.empty());
  ASSERT_EQ(frames[1].fds.size(), 2u);
  EXPECT_TRUE(frames[2].fds.empty());
  // They are the pipe: a write through one arrives at r.
  ASSERT_EQ(::write(frames[1].fds[1].get(), "x", 1), 1);
  char c;
  EXPECT_EQ(::read(r.get(), &c, 1), 1);
}

TEST(FrameDecoder, DescriptorsWhereNoneAreAllowedFailTheStream) {
  Pair p;
  int fd = ::dup(0);
  UniqueFd owned(fd);
  int one[1] = {fd};
  // A data frame may not declare descriptors; sent anyway with the bytes.
  std::string frame = EncodeFrame(FrameType::kRequest, 0, 0, "{}");
  ASSERT_TRUE(SendAll(p.a.get(), frame, one));
  FrameDecoder d(DecoderRules::AdminClient());  // max_fds 0
  auto r = RecvInto(p.b.get(), &d);
  EXPECT_FALSE(r);
  EXPECT_TRUE(d.failed());
}

TEST(FrameDecoder, ClosedMidFrameIsAnErrorAndBetweenFramesIsEnd) {
  {
    Pair p;
    p.a.reset();
    FrameDecoder d(DecoderRules::AdminClient());
    auto f = ReadFrame(p.b.get(), &d);
    ASSERT_TRUE(f);
    EXPECT_FALSE(*f);
  }
  {
    Pair p;
    std::string partial = EncodeFrame(FrameType::kResponse, 0, 0, R"({"id":1})").substr(0, 14);
    ASSERT_TRUE(SendAll(p.a.get(), partial));
    p.a.reset();
    FrameDecoder d(DecoderRules::AdminClient());
    auto f = ReadFrame(p.b.get(), &d);
    ASSERT_FALSE(f);
    EXPECT_THAT(f.error().message(), HasSubstr("middle of a frame"));
  }
}

TEST(OutQueue, WritesWhatTheSocketTakesAndKeepsTheRest) {
  Pair p;
  int small = 4096;
  ASSERT_EQ(::setsockopt(p.a.get(), SOL_SOCKET, SO_SNDBUF, &small, sizeof(small)), 0);
  ::fcntl(p.a.get(), F_SETFL, O_NONBLOCK);
  OutQueue out;
  std::string payload(kMaxDataPayload, 'x');
  for (int i = 0; i < 8; ++i) out.Push(EncodeFrame(FrameType::kData, 1, kStdout, payload));
  auto drained = out.Flush(p.a.get());
  ASSERT_TRUE(drained);
  EXPECT_FALSE(*drained);
  EXPECT_GT(out.bytes(), 0u);
  // The reader takes everything; the queue drains into it in order.
  FrameDecoder d(DecoderRules::AdminClient());
  size_t got = 0;
  while (got < 8) {
    (void)out.Flush(p.a.get());
    auto r = RecvInto(p.b.get(), &d);
    ASSERT_TRUE(r);
    while (auto f = *d.Next()) {
      EXPECT_EQ(f->payload, payload);
      ++got;
    }
  }
  EXPECT_TRUE(out.empty());
}

TEST(Frame, EncodeChecksItsOwnRules) {
  EXPECT_DEATH(EncodeFrame(FrameType::kData, 1, kStdout, ""), "CHECK failed");
  EXPECT_DEATH(EncodeFrame(FrameType::kEof, 1, 3, ""), "CHECK failed");
  EXPECT_EQ(EncodeFrame(FrameType::kEof, 1, kStdout, "").size(), kHeaderSize);
}

}  // namespace
}  // namespace tessera::wire
