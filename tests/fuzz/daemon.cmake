# The daemon without main.c, for the targets that drive its sessions
# in-process (fuzz_session, its replay) or feed it stdin (iovad-stdin):
# every daemon source, the engine's and the protocol's, compiled into the
# target so that the fuzzers' coverage and the sanitizers see all of it.
# A glob, so a new daemon source (the configured iovad's list is in
# daemon/CMakeLists.txt) is picked up here without a change.
pkg_check_modules(IOVAD_FZ_LIBS REQUIRED IMPORTED_TARGET
  libevent>=2.1 liburing>=2.0 libsystemd libibverbs librdmacm inih zlib)
file(GLOB IOVAD_DAEMON_FUZZ_SRCS CONFIGURE_DEPENDS
  ${PROJECT_SOURCE_DIR}/daemon/*.c ${PROJECT_SOURCE_DIR}/daemon/domain/*.c
  ${PROJECT_SOURCE_DIR}/proto/*.c)
list(FILTER IOVAD_DAEMON_FUZZ_SRCS EXCLUDE REGEX "/daemon/(main|fuzz_stdin)\\.c$")
set(IOVAD_DAEMON_FUZZ_INCS ${PROJECT_SOURCE_DIR}/daemon ${PROJECT_SOURCE_DIR}/daemon/domain
  ${PROJECT_SOURCE_DIR}/proto)
