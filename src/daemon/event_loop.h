#pragma once
// The daemon's one event loop: a thin owner of an sd-event loop (libsystemd)
// with RAII handles for descriptor watches and timers, signal handlers, and
// Post() for other threads (the worker pool) to hand results back. Every
// callback runs on the loop thread; nothing else touches daemon state.
//
//   EventLoop loop = TRY(EventLoop::Create());
//   EventLoop::Watch w = TRY(loop.WatchFd(fd, EPOLLIN, [&](uint32_t ev) { ... }));
//   EventLoop::Timer t = loop.After(std::chrono::seconds(10), [&] { ... });
//   pool.Run(work, done);        // done is posted back to the loop
//   return loop.Run();           // until loop.Exit(code)
//
// Destroying a Watch or Timer (also from inside its own callback) stops it;
// its callback object is freed only after the current dispatch finishes.

#include <sys/epoll.h>
#include <sys/signalfd.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "common/error.h"
#include "common/unique_fd.h"

typedef struct sd_event sd_event;
typedef struct sd_event_source sd_event_source;

namespace tessera::daemon {

class EventLoop {
 public:
  using IoCallback = std::function<void(uint32_t revents)>;
  using Callback = std::function<void()>;

  // RAII handle of one sd-event source.
  class Source {
   public:
    Source() = default;
    Source(Source&& other) noexcept { *this = std::move(other); }
    Source& operator=(Source&& other) noexcept;
    ~Source() { Reset(); }
    void Reset();
    explicit operator bool() const { return source_ != nullptr; }

   private:
    friend class EventLoop;
    EventLoop* loop_ = nullptr;
    sd_event_source* source_ = nullptr;
    std::shared_ptr<void> callback_;  // kept alive until the dispatch ends
  };
  using Watch = Source;
  using Timer = Source;

  static Result<std::unique_ptr<EventLoop>> Create();
  ~EventLoop();
  EventLoop(const EventLoop&) = delete;
  EventLoop& operator=(const EventLoop&) = delete;

  // Calls `callback` whenever `fd` has any of `events` (EPOLLIN, EPOLLOUT...).
  Result<Watch> WatchFd(int fd, uint32_t events, IoCallback callback);
  // Changes what a watch waits for (0 = pause it).
  void SetEvents(Watch& watch, uint32_t events);
  // One-shot timer.
  Timer After(std::chrono::milliseconds delay, Callback callback);
  // Signals (blocked by the caller in every thread before the loop runs).
  Result<Watch> OnSignal(int signo, std::function<void(const signalfd_siginfo&)> callback);
  // Thread-safe: runs `callback` on the loop thread soon.
  void Post(Callback callback);

  // Runs until Exit; returns its code. An exited loop cannot run again.
  int Run();
  void Exit(int code);
  // One round of dispatches, waiting at most `timeout` for something to do
  // (tests drive the loop this way until a condition holds).
  void RunOnce(std::chrono::milliseconds timeout);

 private:
  EventLoop() = default;
  void DrainPosted();
  void Retire(std::shared_ptr<void> callback);

  sd_event* event_ = nullptr;
  UniqueFd post_fd_;  // eventfd
  Watch post_watch_;
  std::mutex post_mu_;
  std::deque<Callback> posted_;
  // Callbacks of sources destroyed during a dispatch, freed afterwards (by
  // a "post" source, which sd-event runs after each round of dispatches).
  std::vector<std::shared_ptr<void>> retired_;
  Watch retire_sweep_;
  bool in_destructor_ = false;
};

// Runs blocking work (backend starts and stops, template builds, storage) on a
// few threads; each result goes back to the loop thread.
//
//   pool.Run<Result<int>>([] { return SlowThing(); },
//                         [](Result<int> r) { ... on the loop ... });
class WorkerPool {
 public:
  WorkerPool(EventLoop& loop, size_t threads);
  ~WorkerPool();  // finishes queued work, joins

  template <class T>
  void Run(std::function<T()> work, std::function<void(T)> done) {
    Enqueue([this, work = std::move(work), done = std::move(done)]() mutable {
      // Boxed: results such as Result<std::unique_ptr<...>> are move-only and
      // std::function needs copyable callables.
      auto result = std::make_shared<T>(work());
      loop_.Post([done = std::move(done), result] { done(std::move(*result)); });
    });
  }
  // Tasks queued or running (the daemon waits for 0 before it exits).
  size_t busy() const;

 private:
  void Enqueue(std::function<void()> task);
  void Worker();

  EventLoop& loop_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> queue_;
  size_t running_ = 0;
  bool stopping_ = false;
  std::vector<std::thread> threads_;
};

}  // namespace tessera::daemon
