"""blockvault: block volumes with customer-managed keys behind the OCI Block Volume, Vault and Identity APIs."""
