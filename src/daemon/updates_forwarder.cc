#include "daemon/updates_forwarder.h"

#include "common/log.h"

namespace tessera::daemon {

namespace {

// The caller of a detached run: it only hears how the start went.
class DetachedCaller : public RunCaller {
 public:
  explicit DetachedCaller(std::string qube) : qube_(std::move(qube)) {}
  void Attach(AdminServer::StreamHandler* /*handler*/) override {}
  void Send(wire::FrameType /*type*/, uint8_t /*stream*/, std::string_view /*payload*/) override {}
  void Reply(ApiResult<nlohmann::json> result) override {
    if (!result) {
      Log(LogLevel::kWarn, "updates forwarder not started",
          {{"qube", qube_}, {"error", result.error().message}});
    }
  }

 private:
  std::string qube_;
};

}  // namespace

void UpdatesForwarder::OnRunning(const std::string& qube, backend::Instance& /*instance*/) {
  const config::Qube* q = manager_.config().system().Find(qube);
  if (q == nullptr || q->klass != config::QubeClass::kTemplate) return;
  // After the manager has finished the start that called us.
  loop_.Post([this, alive = alive_, qube] {
    if (!*alive) return;
    RunRequest run;
    run.qube = qube;
    run.open.argv = {kUpdatesForwarder, "forward"};
    run.open.user.clear();  // the qube's default user
    run.open.detach = true;
    runs_.Start(std::make_unique<DetachedCaller>(qube), std::move(run));
  });
}

}  // namespace tessera::daemon
