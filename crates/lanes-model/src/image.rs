//! What an image reference says of the version it runs.

/// `v<major>` of an image's tag (`go-http-sample:2.0` → `v2`), if it has one.
pub fn version_of_image(image: &str) -> Option<String> {
    let last = image.rsplit('/').next()?;
    let (_, tag) = last.split_once(':')?;
    let major: u64 = tag
        .trim_start_matches('v')
        .split(['.', '-'])
        .next()?
        .parse()
        .ok()?;
    Some(format!("v{major}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_come_from_the_image_tag() {
        assert_eq!(
            version_of_image(
                "registry.cn-beijing.aliyuncs.com/aliacs-app-catalog/go-http-sample:2.0"
            )
            .as_deref(),
            Some("v2")
        );
        assert_eq!(
            version_of_image("go-http-sample:1.0").as_deref(),
            Some("v1")
        );
        assert_eq!(
            version_of_image("localhost:5000/go-http-sample").as_deref(),
            None
        );
        assert_eq!(version_of_image("x:v3.1").as_deref(), Some("v3"));
    }
}
