# %post (the systemd macros' equivalents, written out: the package is
# built without rpmbuild). The berth group (sysusers), the folders admins
# fill, then berthd: enabled on a fresh install by its preset (shipped in
# /usr/lib/systemd/system-preset/80-berth.preset) and started if enabled.
systemd-sysusers /usr/lib/sysusers.d/berth.conf >/dev/null 2>&1 || :
install -d -m 0755 /etc/berth/templates-custom /etc/berth/events
# db_dir's default (SME Server has it; a plain EL host does not).
[ -d /home/e-smith/db ] || install -d -m 0755 /home/e-smith/db
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || :
    if [ "$1" -eq 1 ]; then
        systemctl preset berthd.service >/dev/null 2>&1 || :
        if systemctl -q is-enabled berthd.service; then
            systemctl start berthd.service >/dev/null 2>&1 || :
        fi
    fi
fi
