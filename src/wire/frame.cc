#include "wire/frame.h"

#include <cstring>

#include "common/check.h"

namespace tessera::wire {
namespace {

constexpr uint32_t Bit(FrameType t) { return 1u << static_cast<int>(t); }

uint32_t ReadLe32(const char* p) {
  const auto* u = reinterpret_cast<const unsigned char*>(p);
  return static_cast<uint32_t>(u[0]) | (static_cast<uint32_t>(u[1]) << 8) |
         (static_cast<uint32_t>(u[2]) << 16) | (static_cast<uint32_t>(u[3]) << 24);
}

void AppendLe32(std::string* out, uint32_t v) {
  for (int i = 0; i < 4; ++i) out->push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

bool IsKnown(uint8_t type) {
  switch (static_cast<FrameType>(type)) {
    case FrameType::kHello:
    case FrameType::kRequest:
    case FrameType::kResponse:
    case FrameType::kEvent:
    case FrameType::kOpen:
    case FrameType::kStarted:
    case FrameType::kData:
    case FrameType::kEof:
    case FrameType::kCredit:
    case FrameType::kSignal:
    case FrameType::kExit:
    case FrameType::kError:
    case FrameType::kClose:
    case FrameType::kResize:
    case FrameType::kCall:
      return true;
  }
  return false;
}

bool IsJson(FrameType t) {
  return t == FrameType::kHello || t == FrameType::kRequest || t == FrameType::kResponse ||
         t == FrameType::kEvent || t == FrameType::kOpen || t == FrameType::kError ||
         t == FrameType::kCall;
}

bool CarriesStream(FrameType t) {
  return t == FrameType::kData || t == FrameType::kEof || t == FrameType::kCredit;
}

// started: on a call between cells, the pipes of the call's stdin and stdout
// (docs/RPC.md "Streams").
bool MayCarryFds(FrameType t) {
  return t == FrameType::kRequest || t == FrameType::kOpen || t == FrameType::kStarted;
}

// The payload-size rule of each type: {min, max}.
struct SizeRule {
  uint32_t min;
  uint32_t max;
};
SizeRule SizeOf(FrameType t, uint32_t max_json) {
  if (IsJson(t)) return {2, max_json};  // at least "{}"
  switch (t) {
    case FrameType::kData:
      return {1, kMaxDataPayload};
    case FrameType::kStarted:
    case FrameType::kCredit:
    case FrameType::kSignal:
    case FrameType::kExit:
    case FrameType::kResize:
      return {4, 4};
    default:
      return {0, 0};  // eof, close
  }
}

// Every rule the decoder enforces, also used to CHECK what we encode.
std::optional<std::string> Violation(uint8_t type, uint8_t stream, uint8_t nfds,
                                     uint8_t reserved, uint32_t length, uint32_t max_json,
                                     uint8_t max_fds) {
  if (!IsKnown(type)) return "unknown frame type " + std::to_string(type);
  auto t = static_cast<FrameType>(type);
  if (reserved != 0) return "reserved header byte is not 0";
  if (CarriesStream(t) ? stream > kStderr : stream != 0) {
    return "bad stream " + std::to_string(stream) + " for a " + std::string(ToString(t)) + " frame";
  }
  if (nfds != 0 && (!MayCarryFds(t) || nfds > max_fds)) {
    return std::to_string(nfds) + " descriptors on a " + std::string(ToString(t)) + " frame";
  }
  SizeRule rule = SizeOf(t, max_json);
  if (length < rule.min || length > rule.max) {
    return "payload of " + std::to_string(length) + " bytes for a " + std::string(ToString(t)) +
           " frame (allowed " + std::to_string(rule.min) + ".." + std::to_string(rule.max) + ")";
  }
  return std::nullopt;
}

}  // namespace

std::string_view ToString(FrameType type) {
  switch (type) {
    case FrameType::kHello: return "hello";
    case FrameType::kRequest: return "request";
    case FrameType::kResponse: return "response";
    case FrameType::kEvent: return "event";
    case FrameType::kOpen: return "open";
    case FrameType::kStarted: return "started";
    case FrameType::kData: return "data";
    case FrameType::kEof: return "eof";
    case FrameType::kCredit: return "credit";
    case FrameType::kSignal: return "signal";
    case FrameType::kExit: return "exit";
    case FrameType::kError: return "error";
    case FrameType::kClose: return "close";
    case FrameType::kResize:
      return "resize";
    case FrameType::kCall:
      return "call";
  }
  return "unknown";
}

DecoderRules DecoderRules::AdminServer() {
  DecoderRules r;
  r.allowed_types = Bit(FrameType::kRequest) | Bit(FrameType::kData) | Bit(FrameType::kEof) |
                    Bit(FrameType::kCredit) | Bit(FrameType::kSignal) | Bit(FrameType::kClose) |
                    Bit(FrameType::kResize);
  return r;
}

DecoderRules DecoderRules::AdminClient() {
  DecoderRules r;
  r.max_fds = 0;
  r.allowed_types = Bit(FrameType::kResponse) | Bit(FrameType::kEvent) | Bit(FrameType::kData) |
                    Bit(FrameType::kEof) | Bit(FrameType::kCredit) | Bit(FrameType::kStarted);
  return r;
}

DecoderRules DecoderRules::AgentSide() {
  DecoderRules r;
  // started, exit and error: the host's side of a call the qube made.
  r.allowed_types = Bit(FrameType::kHello) | Bit(FrameType::kOpen) | Bit(FrameType::kData) |
                    Bit(FrameType::kEof) | Bit(FrameType::kCredit) | Bit(FrameType::kSignal) |
                    Bit(FrameType::kClose) | Bit(FrameType::kResize) | Bit(FrameType::kStarted) |
                    Bit(FrameType::kExit) | Bit(FrameType::kError);
  return r;
}

DecoderRules DecoderRules::CallServer() {
  DecoderRules r;
  r.max_fds = 0;
  r.max_json = 1024;
  r.allowed_types = Bit(FrameType::kCall) | Bit(FrameType::kData) | Bit(FrameType::kEof) |
                    Bit(FrameType::kCredit) | Bit(FrameType::kClose);
  return r;
}

DecoderRules DecoderRules::CallClient() {
  DecoderRules r;
  r.max_fds = 2;  // the call's stdin and stdout pipes, on `started`
  r.max_json = 64u << 10;
  r.allowed_types = Bit(FrameType::kStarted) | Bit(FrameType::kData) | Bit(FrameType::kEof) |
                    Bit(FrameType::kCredit) | Bit(FrameType::kExit) | Bit(FrameType::kError);
  return r;
}

DecoderRules DecoderRules::HostSide() {
  DecoderRules r;
  r.max_fds = 0;
  // An agent's JSON (hello, errors) is small; the host never needs 1 MiB of it.
  r.max_json = 64u << 10;
  // call and close: a call from the qube (its stdin data and eof, its
  // output's credit and its hang-up).
  r.allowed_types = Bit(FrameType::kHello) | Bit(FrameType::kStarted) | Bit(FrameType::kData) |
                    Bit(FrameType::kEof) | Bit(FrameType::kCredit) | Bit(FrameType::kExit) |
                    Bit(FrameType::kError) | Bit(FrameType::kCall) | Bit(FrameType::kClose);
  return r;
}

void AppendFrame(std::string* out, FrameType type, uint32_t session, uint8_t stream,
                 std::string_view payload, uint8_t nfds) {
  TESSERA_CHECK(payload.size() <= kMaxJsonPayload);
  auto length = static_cast<uint32_t>(payload.size());
  TESSERA_CHECK(!Violation(static_cast<uint8_t>(type), stream, nfds, 0, length, kMaxJsonPayload,
                           kMaxFdsPerFrame));
  AppendLe32(out, length);
  AppendLe32(out, session);
  out->push_back(static_cast<char>(type));
  out->push_back(static_cast<char>(stream));
  out->push_back(static_cast<char>(nfds));
  out->push_back(0);
  out->append(payload);
}

std::string EncodeFrame(FrameType type, uint32_t session, uint8_t stream,
                        std::string_view payload, uint8_t nfds) {
  std::string out;
  out.reserve(kHeaderSize + payload.size());
  AppendFrame(&out, type, session, stream, payload, nfds);
  return out;
}

std::string EncodeU32(uint32_t value) {
  std::string out;
  AppendLe32(&out, value);
  return out;
}

Result<uint32_t> DecodeU32(const Frame& frame) {
  if (frame.payload.size() != 4) {
    return Err(Error(std::string(ToString(frame.type)) + " frame: payload is not 4 bytes", EPROTO));
  }
  return ReadLe32(frame.payload.data());
}

void FrameDecoder::Feed(const char* data, size_t size) {
  if (failed_ || size == 0) return;
  // Compact once the consumed prefix dominates, so a long stream of small
  // frames costs linear time.
  if (offset_ > 0 && offset_ >= buffer_.size() / 2) {
    buffer_.erase(0, offset_);
    offset_ = 0;
  }
  buffer_.append(data, size);
}

Status FrameDecoder::AddFds(std::vector<UniqueFd> fds) {
  if (failed_) return Err(Error("frame stream: " + failure_, EPROTO));
  for (auto& fd : fds) fds_.push_back(std::move(fd));
  // At most one frame's worth can be waiting for its header to complete, plus
  // a complete frame's not yet claimed (its bytes are already buffered).
  if (fds_.size() > 2u * rules_.max_fds) {
    return Fail(std::to_string(fds_.size()) + " descriptors received that no frame claims");
  }
  return Ok();
}

Status FrameDecoder::Fail(std::string message) {
  failed_ = true;
  failure_ = std::move(message);
  buffer_.clear();
  offset_ = 0;
  fds_.clear();
  return Err(Error("frame stream: " + failure_, EPROTO));
}

Result<std::optional<Frame>> FrameDecoder::Next() {
  if (failed_) return Err(Error("frame stream: " + failure_, EPROTO));
  if (buffered() < kHeaderSize) return std::optional<Frame>{};
  const char* h = buffer_.data() + offset_;
  uint32_t length = ReadLe32(h);
  uint32_t session = ReadLe32(h + 4);
  auto type = static_cast<uint8_t>(h[8]);
  auto stream = static_cast<uint8_t>(h[9]);
  auto nfds = static_cast<uint8_t>(h[10]);
  auto reserved = static_cast<uint8_t>(h[11]);
  if (auto bad = Violation(type, stream, nfds, reserved, length, rules_.max_json, rules_.max_fds)) {
    TRY(Fail(*bad));
  }
  if (!rules_.Allows(static_cast<FrameType>(type))) {
    TRY(Fail(std::string("unexpected ") + std::string(ToString(static_cast<FrameType>(type))) +
             " frame"));
  }
  if (buffered() - kHeaderSize < length) return std::optional<Frame>{};
  if (fds_.size() < nfds) {
    TRY(Fail("frame declares " + std::to_string(nfds) + " descriptors but " +
             std::to_string(fds_.size()) + " arrived"));
  }
  Frame frame;
  frame.type = static_cast<FrameType>(type);
  frame.session = session;
  frame.stream = stream;
  frame.payload.assign(h + kHeaderSize, length);
  for (uint8_t i = 0; i < nfds; ++i) {
    frame.fds.push_back(std::move(fds_.front()));
    fds_.pop_front();
  }
  offset_ += kHeaderSize + length;
  if (offset_ == buffer_.size()) {
    buffer_.clear();
    offset_ = 0;
  }
  return std::optional<Frame>(std::move(frame));
}

}  // namespace tessera::wire
