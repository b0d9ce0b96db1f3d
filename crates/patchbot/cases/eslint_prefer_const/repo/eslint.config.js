module.exports = [{ rules: { "prefer-const": "error" } }];
