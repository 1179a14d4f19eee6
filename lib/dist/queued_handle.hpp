// The CommHandle view of a backend's queued collective (MPI, NCCL): polling goes through the
// communicator, which completes its collectives in issue order. Destroying a handle whose
// collective is still running waits for it; an error then is left in the communicator's
// failed() state, since a destructor cannot throw.
#pragma once

#include <memory>
#include <utility>

#include "dist/communicator.hpp"

namespace llmlab {

// Comm provides running(const Queued&), test(Queued&) and wait(Queued&). (Not named Op: the
// base class's Op would hide it.)
template <class Comm, class Queued>
class QueuedHandleOp final : public CommHandle::Op {
 public:
  QueuedHandleOp(Comm& c, std::shared_ptr<Queued> op) : comm_(c), op_(std::move(op)) {}
  ~QueuedHandleOp() override {
    if (!comm_.running(*op_)) return;
    try {
      comm_.wait(*op_);
    } catch (...) {  // the communicator is failed() now
    }
  }
  QueuedHandleOp(const QueuedHandleOp&) = delete;
  QueuedHandleOp& operator=(const QueuedHandleOp&) = delete;
  bool test() override { return comm_.test(*op_); }
  void wait() override { comm_.wait(*op_); }

 private:
  Comm& comm_;
  std::shared_ptr<Queued> op_;
};

}  // namespace llmlab
