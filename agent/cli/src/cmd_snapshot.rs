//! `sgmirror snapshot`: fetch this instance's policy from AWS and write it as the
//! snapshot document the file source reads.

use anyhow::Result;

use crate::args::SnapshotCmdArgs;

#[cfg(feature = "aws")]
pub fn run(args: &SnapshotCmdArgs) -> Result<()> {
    use anyhow::Context;
    use std::io::Write;

    let mut source = sgmirror_aws::AwsSource::new(crate::source_aws::settings(&args.aws))?;
    let fetched = source.fetch().context("fetching the snapshot (nothing written)")?;
    let c = fetched.calls;
    tracing::info!(
        interfaces = fetched.document["NetworkInterfaces"].as_array().map_or(0, Vec::len),
        rules = fetched.document["SecurityGroupRules"].as_array().map_or(0, Vec::len),
        "aws: fetched with {} EC2 requests (DescribeNetworkInterfaces {}, DescribeSecurityGroupRules {}, \
         DescribeManagedPrefixLists {}, GetManagedPrefixListEntries {})",
        c.total(),
        c.describe_network_interfaces,
        c.describe_security_group_rules,
        c.describe_managed_prefix_lists,
        c.get_managed_prefix_list_entries,
    );
    let text = sgmirror_aws::document::to_text(&fetched.document);
    match &args.output {
        None => {
            let mut out = std::io::stdout().lock();
            out.write_all(text.as_bytes()).and_then(|()| out.flush()).context("writing to stdout")?;
        }
        Some(path) => {
            // Written beside the target and renamed: a reader never sees half a file,
            // and a failure leaves the old file as it was.
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            let tmp = path.with_file_name(format!(".{name}.tmp{}", std::process::id()));
            std::fs::write(&tmp, &text).with_context(|| format!("writing {}", tmp.display()))?;
            std::fs::rename(&tmp, path).with_context(|| {
                let _ = std::fs::remove_file(&tmp);
                format!("replacing {}", path.display())
            })?;
            tracing::info!(path = %path.display(), "snapshot written");
        }
    }
    Ok(())
}

#[cfg(not(feature = "aws"))]
pub fn run(_args: &SnapshotCmdArgs) -> Result<()> {
    anyhow::bail!(
        "`sgmirror snapshot` needs the AWS source, which is not built into this sgmirror \
         (built without the `aws` cargo feature)"
    )
}
