"""`vmbuild verify`: each role checked end to end from inside the guests, through the guest agent."""
