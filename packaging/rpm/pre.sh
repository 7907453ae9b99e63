# %pre (%sysusers_create_compat's equivalent): the berth group before any
# file of the package can name it.
getent group berth >/dev/null 2>&1 || groupadd -r berth >/dev/null 2>&1 || :
