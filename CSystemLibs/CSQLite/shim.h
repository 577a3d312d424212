#ifndef PARLEY_CSQLITE_SHIM_H
#define PARLEY_CSQLITE_SHIM_H
#include <sqlite3.h>
// SQLITE_TRANSIENT is a macro casting -1 to a function pointer: Swift cannot import it.
static inline sqlite3_destructor_type parley_sqlite_transient(void) { return SQLITE_TRANSIENT; }
// sqlite3_config is variadic: Swift cannot call it. Allocation statistics off: with them on (the default),
// every SQLite malloc and free takes a process-wide mutex. Only before SQLite initializes (else SQLITE_MISUSE).
static inline int parley_sqlite_disable_memstatus(void) { return sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0); }
#endif
