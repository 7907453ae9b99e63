# %postun (%systemd_postun_with_restart): on upgrade, the new berthd runs
# (a restart of berthd never stops a container). Erase leaves config
# (edited files as .rpmsave), state, containers and volumes alone.
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || :
    if [ "$1" -ge 1 ]; then
        systemctl try-restart berthd.service >/dev/null 2>&1 || :
    fi
fi
