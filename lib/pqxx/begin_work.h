// BeginWork: starts a pqxx::work, first ending a failed transaction the
// session is still in without libpqxx knowing.
//
// How a session gets there: a statement is cancelled by its
// statement_timeout, libpqxx aborts the transaction with ROLLBACK, and the
// timeout's cancel, arriving late, cancels that ROLLBACK as well. libpqxx
// swallows errors while aborting, so it believes the session idle while
// the server still holds it in a failed transaction block. Every later
// BEGIN then fails with 25P02 (in_failed_sql_transaction), and libpqxx,
// whose transaction never began, never sends the ROLLBACK that would end
// it: the connection fails every write from then on. Seen here with 16
// connections writing under a 1-2 ms statement_timeout: 3 of them were
// stuck for the rest of an 8 s run (18,472 writes failed with 25P02 at
// BEGIN). ThrottledWriter derives such short timeouts from a write's
// deadline when little of it is left.
//
// Thread safety: not thread-safe (a libpqxx connection is not).

#ifndef SPILLWAY_LIB_PQXX_BEGIN_WORK_H_
#define SPILLWAY_LIB_PQXX_BEGIN_WORK_H_

#include <optional>
#include <pqxx/connection>
#include <pqxx/transaction>

namespace spillway::internal {

// Constructs `*tx` on `connection`. If BEGIN fails with 25P02, sends
// ROLLBACK outside any transaction (nothing of the caller's write has run)
// and begins again, and returns true. Any other error, or a second failure,
// propagates as libpqxx threw it, with `*tx` empty. Not thread-safe.
bool BeginWork(::pqxx::connection& connection, std::optional<::pqxx::work>* tx);

}  // namespace spillway::internal

#endif  // SPILLWAY_LIB_PQXX_BEGIN_WORK_H_
