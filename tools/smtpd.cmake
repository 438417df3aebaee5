# spool-smtpd: the reference SMTP front-end (docs/smtpd.md).
add_executable(spool-smtpd spool_smtpd.cc)
target_link_libraries(spool-smtpd PRIVATE spool_smtpd)
spool_target_defaults(spool-smtpd)
install(TARGETS spool-smtpd RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
