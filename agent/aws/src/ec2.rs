//! The EC2 API calls, each filtered and paginated (`sg-semantics.md` §2.3: a filter or
//! MaxResults moves a Describe* call into the 100/20 token bucket, and every list can
//! outgrow one page).

use aws_sdk_ec2::types::{Filter, ManagedPrefixList, NetworkInterface, PrefixListEntry, SecurityGroupRule};

use crate::error::{AwsError, describe_sdk_error};

/// Filter values per request. EC2 accepts up to 200 values per filter; 100 keeps the
/// request well inside that and inside URL/body limits, and real instances reference
/// far fewer groups.
pub(crate) const FILTER_VALUES: usize = 100;

/// Requests sent per operation during one fetch (pages, not items; SDK retries of one
/// page are not counted). Logged after each refresh so the API budget can be checked.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CallCounts {
    /// `DescribeNetworkInterfaces` requests.
    pub describe_network_interfaces: u32,
    /// `DescribeSecurityGroupRules` requests.
    pub describe_security_group_rules: u32,
    /// `DescribeManagedPrefixLists` requests.
    pub describe_managed_prefix_lists: u32,
    /// `GetManagedPrefixListEntries` requests.
    pub get_managed_prefix_list_entries: u32,
}

impl CallCounts {
    /// All requests.
    pub fn total(&self) -> u32 {
        self.describe_network_interfaces
            + self.describe_security_group_rules
            + self.describe_managed_prefix_lists
            + self.get_managed_prefix_list_entries
    }
}

/// The EC2 client plus the per-fetch request counter.
#[derive(Clone, Debug)]
pub(crate) struct Ec2 {
    pub(crate) client: aws_sdk_ec2::Client,
    pub(crate) calls: CallCounts,
}

fn filter(name: &str, values: &[String]) -> Filter {
    Filter::builder().name(name).set_values(Some(values.to_vec())).build()
}

impl Ec2 {
    /// The ENIs attached to `instance_id` (filter `attachment.instance-id`), for their
    /// `ConnectionTrackingConfiguration`, VPC and subnet.
    pub(crate) async fn own_interfaces(
        &mut self,
        instance_id: &str,
    ) -> Result<Vec<NetworkInterface>, AwsError> {
        self.interfaces("attachment.instance-id", &[instance_id.to_owned()]).await
    }

    /// Every ENI holding one of `group_ids` (filter `group-id`): the members whose private
    /// addresses a group reference stands for.
    pub(crate) async fn group_members(
        &mut self,
        group_ids: &[String],
    ) -> Result<Vec<NetworkInterface>, AwsError> {
        self.interfaces("group-id", group_ids).await
    }

    async fn interfaces(&mut self, name: &str, values: &[String]) -> Result<Vec<NetworkInterface>, AwsError> {
        const OP: &str = "DescribeNetworkInterfaces";
        let mut out = Vec::new();
        for chunk in values.chunks(FILTER_VALUES) {
            let mut pages = self
                .client
                .describe_network_interfaces()
                .filters(filter(name, chunk))
                .max_results(1000)
                .into_paginator()
                .send();
            while let Some(page) = pages.next().await {
                self.calls.describe_network_interfaces += 1;
                let page =
                    page.map_err(|e| AwsError::Api { operation: OP, message: describe_sdk_error(&e) })?;
                out.extend(page.network_interfaces().iter().cloned());
            }
        }
        Ok(out)
    }

    /// Every rule of `group_ids` (filter `group-id`).
    pub(crate) async fn security_group_rules(
        &mut self,
        group_ids: &[String],
    ) -> Result<Vec<SecurityGroupRule>, AwsError> {
        const OP: &str = "DescribeSecurityGroupRules";
        let mut out = Vec::new();
        for chunk in group_ids.chunks(FILTER_VALUES) {
            let mut pages = self
                .client
                .describe_security_group_rules()
                .filters(filter("group-id", chunk))
                .max_results(1000)
                .into_paginator()
                .send();
            while let Some(page) = pages.next().await {
                self.calls.describe_security_group_rules += 1;
                let page =
                    page.map_err(|e| AwsError::Api { operation: OP, message: describe_sdk_error(&e) })?;
                out.extend(page.security_group_rules().iter().cloned());
            }
        }
        Ok(out)
    }

    /// The lists `ids` with their current `Version` (filter `prefix-list-id`).
    pub(crate) async fn prefix_lists(&mut self, ids: &[String]) -> Result<Vec<ManagedPrefixList>, AwsError> {
        const OP: &str = "DescribeManagedPrefixLists";
        let mut out = Vec::new();
        for chunk in ids.chunks(FILTER_VALUES) {
            let mut pages = self
                .client
                .describe_managed_prefix_lists()
                .filters(filter("prefix-list-id", chunk))
                .max_results(100)
                .into_paginator()
                .send();
            while let Some(page) = pages.next().await {
                self.calls.describe_managed_prefix_lists += 1;
                let page =
                    page.map_err(|e| AwsError::Api { operation: OP, message: describe_sdk_error(&e) })?;
                out.extend(page.prefix_lists().iter().cloned());
            }
        }
        Ok(out)
    }

    /// The entries of list `id` at `version` (so that the entries match the version the
    /// cache files them under), 100 per page.
    pub(crate) async fn prefix_list_entries(
        &mut self,
        id: &str,
        version: Option<i64>,
    ) -> Result<Vec<PrefixListEntry>, AwsError> {
        const OP: &str = "GetManagedPrefixListEntries";
        let mut out = Vec::new();
        let mut pages = self
            .client
            .get_managed_prefix_list_entries()
            .prefix_list_id(id)
            .set_target_version(version)
            .max_results(100)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            self.calls.get_managed_prefix_list_entries += 1;
            let page = page.map_err(|e| AwsError::Api { operation: OP, message: describe_sdk_error(&e) })?;
            out.extend(page.entries().iter().cloned());
        }
        Ok(out)
    }
}
