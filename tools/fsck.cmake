# spool-fsck: check and repair a spool (SPEC §6). The logic is engine/fsck.
add_executable(spool-fsck ${CMAKE_CURRENT_LIST_DIR}/spool_fsck.cc)
target_link_libraries(spool-fsck PRIVATE spool_fsck)
spool_target_defaults(spool-fsck)
install(TARGETS spool-fsck RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
