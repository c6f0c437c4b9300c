#include "daemon/event_loop.h"

#include <sys/eventfd.h>
#include <systemd/sd-event.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "common/check.h"
#include "common/log.h"

namespace tessera::daemon {
namespace {

int OnIo(sd_event_source*, int, uint32_t revents, void* userdata) {
  (*static_cast<EventLoop::IoCallback*>(userdata))(revents);
  return 0;
}

int OnTime(sd_event_source*, uint64_t, void* userdata) {
  (*static_cast<EventLoop::Callback*>(userdata))();
  return 0;
}

using SignalCallback = std::function<void(const signalfd_siginfo&)>;
int OnSignalEvent(sd_event_source*, const signalfd_siginfo* info, void* userdata) {
  (*static_cast<SignalCallback*>(userdata))(*info);
  return 0;
}

}  // namespace

EventLoop::Source& EventLoop::Source::operator=(Source&& other) noexcept {
  if (this != &other) {
    Reset();
    loop_ = std::exchange(other.loop_, nullptr);
    source_ = std::exchange(other.source_, nullptr);
    callback_ = std::move(other.callback_);
  }
  return *this;
}

void EventLoop::Source::Reset() {
  if (source_ == nullptr) return;
  sd_event_source_disable_unref(source_);
  source_ = nullptr;
  // The callback may be the one running right now: free it after the dispatch.
  if (loop_ != nullptr && callback_) loop_->Retire(std::move(callback_));
  callback_.reset();
  loop_ = nullptr;
}

Result<std::unique_ptr<EventLoop>> EventLoop::Create() {
  std::unique_ptr<EventLoop> loop(new EventLoop());
  if (int r = sd_event_new(&loop->event_); r < 0) return Err(Error::FromErrno("sd_event_new", -r));
  loop->post_fd_.reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!loop->post_fd_) return Err(Error::FromErrno("eventfd"));
  EventLoop* self = loop.get();
  loop->post_watch_ = TRY(loop->WatchFd(loop->post_fd_.get(), EPOLLIN, [self](uint32_t) {
    uint64_t n;
    (void)!::read(self->post_fd_.get(), &n, sizeof(n));
    self->DrainPosted();
  }));
  // Frees retired callbacks after every round of dispatches.
  auto sweep = std::make_shared<Callback>([self] { self->retired_.clear(); });
  sd_event_source* s = nullptr;
  if (int r = sd_event_add_post(
          loop->event_, &s,
          [](sd_event_source*, void* userdata) {
            (*static_cast<Callback*>(userdata))();
            return 0;
          },
          sweep.get());
      r < 0) {
    return Err(Error::FromErrno("sd_event_add_post", -r));
  }
  loop->retire_sweep_.loop_ = nullptr;  // never retired: lives as long as the loop
  loop->retire_sweep_.source_ = s;
  loop->retire_sweep_.callback_ = sweep;
  return loop;
}

EventLoop::~EventLoop() {
  in_destructor_ = true;
  post_watch_.Reset();
  retire_sweep_.Reset();
  retired_.clear();
  sd_event_unref(event_);
}

void EventLoop::Retire(std::shared_ptr<void> callback) {
  if (in_destructor_) return;
  retired_.push_back(std::move(callback));
}

Result<EventLoop::Watch> EventLoop::WatchFd(int fd, uint32_t events, IoCallback callback) {
  auto cb = std::make_shared<IoCallback>(std::move(callback));
  Watch w;
  if (int r = sd_event_add_io(event_, &w.source_, fd, events, OnIo, cb.get()); r < 0) {
    return Err(Error::FromErrno("sd_event_add_io", -r));
  }
  w.loop_ = this;
  w.callback_ = std::move(cb);
  return w;
}

void EventLoop::SetEvents(Watch& watch, uint32_t events) {
  if (!watch.source_) return;
  if (events == 0) {
    sd_event_source_set_enabled(watch.source_, SD_EVENT_OFF);
    return;
  }
  sd_event_source_set_io_events(watch.source_, events);
  sd_event_source_set_enabled(watch.source_, SD_EVENT_ON);
}

EventLoop::Timer EventLoop::After(std::chrono::milliseconds delay, Callback callback) {
  auto cb = std::make_shared<Callback>(std::move(callback));
  Timer t;
  uint64_t usec = static_cast<uint64_t>(std::max<int64_t>(0, delay.count())) * 1000;
  int r = sd_event_add_time_relative(event_, &t.source_, CLOCK_MONOTONIC, usec, 1000, OnTime,
                                     cb.get());
  // Only ENOMEM can fail here: a daemon that cannot allocate a timer is broken.
  TESSERA_CHECK(r >= 0);
  t.loop_ = this;
  t.callback_ = std::move(cb);
  return t;
}

Result<EventLoop::Watch> EventLoop::OnSignal(int signo,
                                             std::function<void(const signalfd_siginfo&)> callback) {
  auto cb = std::make_shared<SignalCallback>(std::move(callback));
  Watch w;
  if (int r = sd_event_add_signal(event_, &w.source_, signo, OnSignalEvent, cb.get()); r < 0) {
    return Err(Error::FromErrno("sd_event_add_signal", -r));
  }
  w.loop_ = this;
  w.callback_ = std::move(cb);
  return w;
}

void EventLoop::Post(Callback callback) {
  {
    std::lock_guard<std::mutex> lock(post_mu_);
    posted_.push_back(std::move(callback));
  }
  uint64_t one = 1;
  (void)!::write(post_fd_.get(), &one, sizeof(one));
}

void EventLoop::DrainPosted() {
  std::deque<Callback> batch;
  {
    std::lock_guard<std::mutex> lock(post_mu_);
    batch.swap(posted_);
  }
  for (auto& cb : batch) cb();
}

int EventLoop::Run() {
  int r = sd_event_loop(event_);
  if (r < 0) Log(LogLevel::kError, "event loop failed", {{"errno", std::to_string(-r)}});
  return r;
}

void EventLoop::Exit(int code) { sd_event_exit(event_, code); }

void EventLoop::RunOnce(std::chrono::milliseconds timeout) {
  sd_event_run(event_, static_cast<uint64_t>(std::max<int64_t>(0, timeout.count())) * 1000);
}

WorkerPool::WorkerPool(EventLoop& loop, size_t threads) : loop_(loop) {
  for (size_t i = 0; i < threads; ++i) threads_.emplace_back([this] { Worker(); });
}

WorkerPool::~WorkerPool() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  for (auto& t : threads_) t.join();
}

void WorkerPool::Enqueue(std::function<void()> task) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    queue_.push_back(std::move(task));
  }
  cv_.notify_one();
}

size_t WorkerPool::busy() const {
  std::lock_guard<std::mutex> lock(mu_);
  return queue_.size() + running_;
}

void WorkerPool::Worker() {
  for (;;) {
    std::function<void()> task;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) return;  // stopping, and everything queued is done
      task = std::move(queue_.front());
      queue_.pop_front();
      ++running_;
    }
    task();
    std::lock_guard<std::mutex> lock(mu_);
    --running_;
  }
}

}  // namespace tessera::daemon
