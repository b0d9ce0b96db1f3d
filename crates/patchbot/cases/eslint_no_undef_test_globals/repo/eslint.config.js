module.exports = [{ rules: { "no-undef": "error" } }];
