# %preun (%systemd_preun): on erase, berthd is disabled and stopped.
# Stopping berthd never stops a container.
if [ "$1" -eq 0 ] && [ -d /run/systemd/system ]; then
    systemctl --no-reload disable --now berthd.service >/dev/null 2>&1 || :
fi
