#include "cell/cell_backend.h"

#include "cell/seccomp_monitor.h"

namespace tessera::cell {
namespace {

class CellDenialMonitor : public backend::DenialMonitor {
 public:
  explicit CellDenialMonitor(SeccompMonitor monitor) : monitor_(std::move(monitor)) {}
  int fd() const override { return monitor_.fd(); }
  Result<std::optional<backend::DeniedCall>> AnswerOne() override {
    auto v = TRY(monitor_.HandleOne());
    if (!v || v->target_gone) return std::optional<backend::DeniedCall>{};
    return std::optional<backend::DeniedCall>(
        backend::DeniedCall{v->pid, v->syscall_name, v->errno_answered});
  }

 private:
  SeccompMonitor monitor_;
};

}  // namespace

std::unique_ptr<backend::DenialMonitor> Cell::TakeDenialMonitor() {
  if (!seccomp_listener_ || !seccomp_program_) return nullptr;
  return std::make_unique<CellDenialMonitor>(
      SeccompMonitor(std::move(seccomp_listener_), seccomp_program_));
}

Result<std::unique_ptr<backend::Instance>> CellBackend::Start(
    const backend::LaunchSpec& spec, const storage::PreparedStorage& storage) {
  Cell cell = TRY(Cell::Start(layout_, spec, storage, options_));
  return std::unique_ptr<backend::Instance>(std::make_unique<Cell>(std::move(cell)));
}

Result<std::unique_ptr<backend::Instance>> CellBackend::Adopt(const std::string& name) {
  Cell cell = TRY(Cell::Adopt(layout_, name));
  return std::unique_ptr<backend::Instance>(std::make_unique<Cell>(std::move(cell)));
}

Result<std::vector<std::string>> CellBackend::Leftovers() { return Cell::List(layout_); }

Status CellBackend::Cleanup(const std::string& name) { return Cell::Cleanup(layout_, name); }

}  // namespace tessera::cell
