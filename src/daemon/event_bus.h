#pragma once
// Lifecycle and apply events for `tessera events` and other subscribers.
// A subscriber that cannot keep up (its sink refuses an event) is dropped
// rather than making the daemon buffer without bound.
//
//   uint64_t id = bus.Subscribe([conn](const std::string& e) { return conn->Queue(e); });
//   bus.Emit({{"event", "state"}, {"qube", "work"}, {"state", "running"}});

#include <cstdint>
#include <functional>
#include <map>
#include <string>

#include <nlohmann/json.hpp>

namespace tessera::daemon {

class EventBus {
 public:
  // Returns false when the subscriber can take no more: it is unsubscribed.
  using Sink = std::function<bool(const std::string& event_json)>;

  uint64_t Subscribe(Sink sink);
  void Unsubscribe(uint64_t id);
  // Adds "ts" (RFC 3339, UTC) unless present, and sends to every subscriber.
  void Emit(nlohmann::json event);
  size_t subscribers() const { return sinks_.size(); }

 private:
  uint64_t next_id_ = 1;
  std::map<uint64_t, Sink> sinks_;
};

}  // namespace tessera::daemon
