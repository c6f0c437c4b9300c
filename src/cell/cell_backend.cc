#include "cell/cell_backend.h"

namespace tessera::cell {

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
